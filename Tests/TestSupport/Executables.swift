import Foundation
import LocalRedis

/// Finds an executable product of this package (for example `ordershop`) in the build
/// directory the test runner itself was started from.
///
/// `swift build --build-tests` and `swift test` put every product and the test runner
/// (`<package>PackageTests.xctest`) in the same directory; on macOS the runner is a bundle,
/// so a few parent directories are searched too. A missing product fails loudly.
public func builtProduct(_ name: String) throws -> String {
    var starts: [URL] = []
    if let first = CommandLine.arguments.first, !first.isEmpty {
        starts.append(URL(fileURLWithPath: first).resolvingSymlinksInPath())
    }
    if let executable = Bundle.main.executableURL { starts.append(executable.resolvingSymlinksInPath()) }
    if let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        starts.append(URL(fileURLWithPath: link))
    }
    var searched: [String] = []
    for start in starts {
        var directory = start.deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent(name).path
            searched.append(candidate)
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate, isDirectory: &isDirectory), !isDirectory.boolValue,
                FileManager.default.isExecutableFile(atPath: candidate)
            {
                return candidate
            }
            directory = directory.deletingLastPathComponent()
        }
    }
    throw TestSupportError(
        "\(name) not found next to the test runner (looked at \(searched.joined(separator: ", "))); "
            + "build it with `swift build --build-tests`")
}

/// What a finished child process printed and how it ended.
public struct ChildResult: Sendable {
    /// The exit status (128 + signal when killed by a signal).
    public var status: Int32
    /// stdout and stderr, interleaved.
    public var output: String
}

/// Runs `executable` to completion as a child process (posix_spawn, no shell), waiting without
/// blocking a thread. Kills it and throws when it is still running after `timeout`.
public func runChild(
    _ executable: String, _ arguments: [String], environment: [String: String] = [:],
    timeout: Duration = .seconds(120)
) async throws -> ChildResult {
    let process = try ChildProcess(executable, arguments, environment: environment)
    defer { try? FileManager.default.removeItem(atPath: process.outputFile) }
    guard let status = await process.waitForExit(timeout: timeout) else {
        await process.stop(signal: SIGKILL)
        throw TestSupportError("\(executable) \(arguments) still running after \(timeout): \(process.output)")
    }
    return ChildResult(status: status, output: process.output)
}
