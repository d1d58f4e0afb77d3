import Foundation
import LocalRedis
import Logging
import RedisClient
import StreamWorker
import TestSupport
import Testing

/// Appends `count` events (`event_id` = UUID, `entity` = small JSON) and returns their event ids.
@discardableResult
func publish(
    _ pool: any RedisClientProtocol, stream: String, count: Int, entity: (Int) -> String = { #"{"n":\#($0)}"# }
) async throws -> [String] {
    var ids: [String] = []
    var commands: [XADD] = []
    func flush() async throws {
        for result in await pool.pipeline(commands) { _ = try result.get() }
        commands.removeAll()
    }
    for i in 0..<count {
        let eventID = UUID().uuidString
        ids.append(eventID)
        commands.append(XADD(RedisArgument(stream), fields: [StreamField("event_id", eventID), StreamField("entity", entity(i))]))
        if commands.count == 500 { try await flush() }
    }
    if !commands.isEmpty { try await flush() }
    return ids
}

/// A worker running in this process, stopped by ``stop()`` (a graceful drain).
final class RunningWorker: Sendable {
    let worker: StreamWorker
    let task: Task<Void, any Error>

    /// `logger`: the worker's (default: warnings and above to standard error).
    init(pool: any RedisClientProtocol, configuration: WorkerConfiguration, subscriptions: [Subscription], logger: Logger? = nil) {
        var logger = logger ?? Logger(label: "test-worker")
        if logger.label == "test-worker" { logger.logLevel = .warning }
        let worker = StreamWorker(client: pool, configuration: configuration, subscriptions: subscriptions, logger: logger)
        self.worker = worker
        self.task = Task { try await worker.run() }
    }

    func stop() async throws {
        worker.drain()
        try await task.value
    }
}

/// A handler that commits `HINCRBY effectsKey event_id 1` with the acknowledgement.
func countingHandler(effectsKey: String) -> StreamHandler {
    { delivery in
        .done(effects: [["HINCRBY", RedisArgument(effectsKey), RedisArgument(delivery.eventID), "1"]])
    }
}

/// The applied-effect count per event id.
func effectCounts(_ pool: any RedisClientProtocol, _ key: String) async throws -> [String: Int] {
    let reply = try await pool.send(RawCommand(["HGETALL", RedisArgument(key)], keys: [RedisArgument(key)], readOnly: true))
    var counts: [String: Int] = [:]
    let flat = reply.array ?? []
    var i = 0
    while i + 1 < flat.count {
        counts[flat[i].string ?? ""] = flat[i + 1].int ?? 0
        i += 2
    }
    return counts
}

func pendingCount(_ pool: any RedisClientProtocol, stream: String, group: String) async throws -> Int {
    try await pool.send(XPENDING(RedisArgument(stream), group: group)).count
}

/// A thread-safe recorder for what handlers saw.
final class Recorder<Value: Sendable>: Sendable {
    private let values = LockedValue<[Value]>([])
    func append(_ v: Value) { values.withLock { $0.append(v) } }
    var all: [Value] { values.withLock { $0 } }
}

final class LockedValue<T: Sendable>: @unchecked Sendable {
    private var value: T
    private let lock = NSLock()
    init(_ value: T) { self.value = value }
    func withLock<R>(_ body: (inout T) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}

/// The `ordershop` executable built with the tests (for worker child processes).
func ordershopExecutable() throws -> String {
    var dirs: [URL] = [URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()]
    if let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        dirs.append(URL(fileURLWithPath: link).deletingLastPathComponent())
    }
    for var dir in dirs {
        for _ in 0..<4 {
            let path = dir.appendingPathComponent("ordershop").path
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue { return path }
            dir.deleteLastPathComponent()
        }
    }
    throw TestSupportError("the ordershop executable was not found next to the test binary; run `swift build --build-tests`")
}

/// A worker-probe child process (a real process, so that it can be killed or paused for real).
func startProbe(_ server: LocalRedisServer, stream: String, group: String, extra: [String]) throws -> ChildProcess {
    try ChildProcess(
        try ordershopExecutable(), ["worker-probe", "--url", server.url, "--stream", stream, "--group", group] + extra)
}

/// The stats line a probe prints when it exits.
func probeStats(_ child: ChildProcess) -> [String: Int] {
    guard let line = child.output.split(separator: "\n").last(where: { $0.hasPrefix("stats=") }),
        let data = line.dropFirst("stats=".count).data(using: .utf8),
        let object = try? JSONSerialization.jsonObject(with: data) as? [String: Int]
    else { return [:] }
    return object
}

/// The probe's consumer name, printed at start.
func probeConsumer(_ child: ChildProcess) async -> String? {
    var name: String?
    _ = await eventually(timeout: .seconds(30)) {
        name = child.output.split(separator: "\n").first(where: { $0.hasPrefix("consumer=") }).map { String($0.dropFirst(9)) }
        return name != nil
    }
    return name
}
