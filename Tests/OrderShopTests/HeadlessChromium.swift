import AsyncHTTPClient
import Foundation
import LocalRedis
import Logging
import NIOCore
import Synchronization
import TestSupport
import WSClient

/// A headless Chromium (Debian's `chromium`, installed by `make deps`) started for one test and
/// driven over the DevTools protocol. A machine without it fails the test, loudly: the browser
/// test is part of the suite, not optional.
struct HeadlessChromium {
    let process: ChildProcess
    let profile: String
    /// The DevTools HTTP port (Chromium picks it: --remote-debugging-port=0).
    let port: Int

    static func start(width: Int = 1280, height: Int = 800) async throws -> HeadlessChromium {
        let path = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let path else {
            throw TestFailure("chromium is not installed: `make deps` installs it (apt-get install -y chromium); the dashboard's browser test needs it")
        }
        let profile = NSTemporaryDirectory() + "ordershop-chromium-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: profile, withIntermediateDirectories: true)
        let process = try ChildProcess(
            path,
            [
                "--headless=new", "--remote-debugging-port=0", "--user-data-dir=\(profile)",
                // The WebSocket client sends `Origin: ws://127.0.0.1`, which DevTools refuses unless allowed.
                "--remote-allow-origins=ws://127.0.0.1",
                // As root (CI) Chromium refuses to start with its sandbox; /dev/shm may be small in containers.
                "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--hide-scrollbars", "--window-size=\(width),\(height)", "about:blank",
            ], outputFile: profile + ".log")
        // Chromium writes the port it bound into the profile once DevTools listens.
        var port: Int?
        _ = await eventually(timeout: .seconds(60)) {
            port = (try? String(contentsOfFile: profile + "/DevToolsActivePort", encoding: .utf8))?
                .split(separator: "\n").first.flatMap { Int($0) }
            return port != nil || !process.isRunning
        }
        guard let port else {
            await process.stop(signal: SIGKILL)
            throw TestFailure("chromium did not open its DevTools port:\n\(process.output.suffix(2000))")
        }
        return HeadlessChromium(process: process, profile: profile, port: port)
    }

    /// The DevTools WebSocket of the first page (the about:blank tab it started with).
    func pageWebSocketURL() async throws -> String {
        let response = try await HTTPClient.shared.get(url: "http://127.0.0.1:\(port)/json/list").get()
        let targets = try JSONSerialization.jsonObject(with: Data(buffer: response.body ?? ByteBuffer())) as? [[String: Any]] ?? []
        guard let page = targets.first(where: { $0["type"] as? String == "page" }), let url = page["webSocketDebuggerUrl"] as? String else {
            throw TestFailure("chromium lists no page: \(targets)")
        }
        return url
    }

    /// Stops the browser by its pid (it ends its own helper processes) and removes its profile.
    func stop() async {
        await process.stop(grace: .seconds(10))
        try? FileManager.default.removeItem(atPath: profile)
        try? FileManager.default.removeItem(atPath: profile + ".log")
    }
}

struct DevToolsError: Error, CustomStringConvertible {
    let description: String
}

/// One DevTools session on a page: `call` sends a command and waits for the answer with its id;
/// events are ignored.
final class DevToolsSession: Sendable {
    private struct State {
        var nextID = 1
        var waiting: [Int: CheckedContinuation<String, any Error>] = [:]
        var early: [Int: String] = [:]
        var closed = false
    }

    private let outbound: WebSocketOutboundWriter
    private let state = Mutex(State())

    private init(outbound: WebSocketOutboundWriter) { self.outbound = outbound }

    /// Connects to a page's DevTools WebSocket and runs `body` with the session.
    static func with<T: Sendable>(_ url: String, _ body: @escaping @Sendable (DevToolsSession) async throws -> T) async throws -> T {
        let outcome = Mutex<Result<T, any Error>?>(nil)
        var logger = Logger(label: "devtools")
        logger.logLevel = .warning
        // A screenshot arrives as one message of a few hundred KB of base64.
        try await WebSocketClient.connect(url: url, configuration: .init(maxFrameSize: 64 << 20), logger: logger) { inbound, outbound, _ in
            let session = DevToolsSession(outbound: outbound)
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask {
                    defer { session.close() }
                    for try await message in inbound.messages(maxSize: 64 << 20) {
                        if case .text(let text) = message { session.received(text) }
                    }
                }
                let result: Result<T, any Error>
                do { result = .success(try await body(session)) } catch { result = .failure(error) }
                outcome.withLock { $0 = result }
                try await outbound.close(.normalClosure, reason: nil)
                try await tasks.waitForAll()
            }
        }
        guard let result = outcome.withLock({ $0 }) else { throw DevToolsError(description: "the DevTools connection closed before the test ran") }
        return try result.get()
    }

    /// Sends `method` with `params` and returns the answer's `result`.
    @discardableResult
    func call(_ method: String, _ params: [String: Any] = [:]) async throws -> [String: Any] {
        let id = state.withLock { s in
            defer { s.nextID += 1 }
            return s.nextID
        }
        let request = try JSONSerialization.data(withJSONObject: ["id": id, "method": method, "params": params])
        try await outbound.writeTextMessage(String(decoding: request, as: UTF8.self))
        let reply = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<String, any Error>) in
            state.withLock { s in
                if let text = s.early.removeValue(forKey: id) {
                    continuation.resume(returning: text)
                } else if s.closed {
                    continuation.resume(throwing: DevToolsError(description: "DevTools closed before answering \(method)"))
                } else {
                    s.waiting[id] = continuation
                }
            }
        }
        let object = try JSONSerialization.jsonObject(with: Data(reply.utf8)) as? [String: Any] ?? [:]
        if let error = object["error"] { throw DevToolsError(description: "\(method): \(error)") }
        return object["result"] as? [String: Any] ?? [:]
    }

    /// Evaluates JavaScript in the page (awaiting a promise) and returns its value.
    func evaluate(_ expression: String) async throws -> Any? {
        let result = try await call("Runtime.evaluate", ["expression": expression, "returnByValue": true, "awaitPromise": true])
        if let exception = result["exceptionDetails"] { throw DevToolsError(description: "\(expression): \(exception)") }
        return (result["result"] as? [String: Any])?["value"]
    }

    private func received(_ text: String) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], let id = object["id"] as? Int else { return }
        state.withLock { s in
            if let continuation = s.waiting.removeValue(forKey: id) { continuation.resume(returning: text) } else { s.early[id] = text }
        }
    }

    private func close() {
        let waiting = state.withLock { s in
            s.closed = true
            defer { s.waiting = [:] }
            return s.waiting
        }
        for continuation in waiting.values { continuation.resume(throwing: DevToolsError(description: "DevTools closed")) }
    }
}
