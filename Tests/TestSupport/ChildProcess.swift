import Foundation

/// A child process of the test (a worker, a service), with its output captured to a file.
public final class ChildProcess: @unchecked Sendable {
    public let process: Process
    public let outputFile: String

    /// Starts `executable` (a path, or the name of a product built next to the test binary).
    public init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        let path = executable.contains("/") ? executable : try Self.builtProduct(executable)
        process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        outputFile = FileManager.default.temporaryDirectory.appendingPathComponent("child-\(UUID().uuidString).log").path
        _ = FileManager.default.createFile(atPath: outputFile, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: outputFile))
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }

    public func signal(_ signal: Int32) { kill(process.processIdentifier, signal) }

    /// Waits for the process to exit (polling, without blocking a thread) and returns its status,
    /// or nil when it is still running after `timeout`.
    public func waitForExit(timeout: Duration = .seconds(30)) async -> Int32? {
        let start = ContinuousClock.now
        while process.isRunning {
            if ContinuousClock.now - start > timeout { return nil }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return process.terminationStatus
    }

    /// Kills the process if it still runs.
    public func terminate() async {
        if process.isRunning {
            kill(process.processIdentifier, SIGCONT)
            kill(process.processIdentifier, SIGKILL)
        }
        _ = await waitForExit(timeout: .seconds(10))
    }

    /// Everything the process printed so far.
    public var output: String { (try? String(contentsOfFile: outputFile, encoding: .utf8)) ?? "" }

    /// The path of an executable product built with the tests (same build directory).
    public static func builtProduct(_ name: String) throws -> String {
        var candidates: [URL] = []
        if let exe = Bundle.main.executableURL { candidates.append(exe.deletingLastPathComponent()) }
        let arg0 = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        candidates.append(arg0)
        // The .xctest bundle path on Linux is the test binary itself, inside the build directory.
        for dir in candidates {
            var d = dir
            for _ in 0..<4 {
                let path = d.appendingPathComponent(name).path
                if FileManager.default.isExecutableFile(atPath: path) { return path }
                d = d.deletingLastPathComponent()
            }
        }
        throw TestSupportError("built product '\(name)' not found next to the test binary (\(candidates.map(\.path))); run `swift build` first")
    }
}
