import Foundation
import LocalRedis

/// Runs the Python peers of `../shared/perf-peers/` (redis-py with hiredis) against the bench's
/// redis-server and reads the one JSON line each prints.
struct PeerRunner: Sendable {
    let python: String
    let directory: String

    /// Finds the peers' directory and a Python with redis-py; creates the default venv
    /// (`/tmp/peers-venv`) when it is missing and no interpreter was given.
    static func locate(python: String?, directory: String?) async throws -> PeerRunner {
        let candidates = directory.map { [$0] } ?? [
            FileManager.default.currentDirectoryPath + "/../shared/perf-peers", "/work/shared/perf-peers",
        ]
        guard let dir = candidates.first(where: { FileManager.default.fileExists(atPath: $0 + "/_common.py") }) else {
            throw BenchRunError("peer scripts not found (looked in \(candidates)); pass --peers-dir")
        }
        let venv = "/tmp/peers-venv"
        let interpreter = python ?? venv + "/bin/python"
        if python == nil && !FileManager.default.isExecutableFile(atPath: interpreter) {
            FileHandle.standardError.write(Data("creating \(venv) (redis, hiredis, faststream[redis])...\n".utf8))
            try await run("python3", ["-m", "venv", venv], what: "python3 -m venv")
            try await run(venv + "/bin/pip", ["install", "-q", "redis", "hiredis", "faststream[redis]"], what: "pip install")
        }
        try await run(interpreter, ["-c", "import redis, hiredis"], what: "\(interpreter) -c 'import redis, hiredis'")
        return PeerRunner(python: (try? ChildProcess.resolve(interpreter)) ?? interpreter, directory: URL(fileURLWithPath: dir).standardized.path)
    }

    private static func run(_ executable: String, _ arguments: [String], what: String) async throws {
        let p = try ChildProcess(executable, arguments)
        defer { try? FileManager.default.removeItem(atPath: p.outputFile) }
        let status = await p.waitForExit(timeout: .seconds(600))
        guard status == 0 else { throw BenchRunError("\(what) failed (exit \(status.map { String($0) } ?? "timeout")): \(p.output.suffix(800))") }
    }

    /// Runs `script` with `--port` and the arguments; returns its JSON result.
    func run(_ script: String, port: Int, _ arguments: [String], timeout: Duration = .seconds(600)) async throws -> [String: Any] {
        let p = try ChildProcess(python, ["\(directory)/\(script)", "--port", "\(port)"] + arguments)
        defer { try? FileManager.default.removeItem(atPath: p.outputFile) }
        guard let status = await p.waitForExit(timeout: timeout) else {
            await p.stop(signal: SIGKILL)
            throw BenchRunError("peer \(script) did not finish within \(timeout)")
        }
        let output = p.output
        for line in output.split(whereSeparator: \.isNewline).reversed() where line.hasPrefix("{") {
            if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] { return object }
        }
        throw BenchRunError("peer \(script) (exit \(status)) printed no JSON: \(output.suffix(800))")
    }

    /// A number from a peer's result.
    static func number(_ result: [String: Any], _ key: String) throws -> Double {
        guard let value = result[key] as? NSNumber else { throw BenchRunError("peer result has no number '\(key)': \(result)") }
        return value.doubleValue
    }
}
