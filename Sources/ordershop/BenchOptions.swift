import ArgumentParser
import Foundation

/// Options shared by the `ordershop bench` suites (worker, scaling, latency, recovery, gateway).
struct BenchOptions: ParsableArguments {
    @Flag(help: "Print one JSON object per figure and line: {\"name\", \"unit\", \"ours\", \"peer\", \"ratio\"}.")
    var json = false

    @Flag(help: "Also run the Python peers (../shared/perf-peers) in the same run, back to back with ours.")
    var peers = false

    @Option(help: "Python interpreter with redis and hiredis (default: /tmp/peers-venv/bin/python, created when missing).")
    var python: String?

    @Option(name: .customLong("peers-dir"), help: "Directory of the peer scripts (default: ../shared/perf-peers).")
    var peersDirectory: String?

    @Option(help: "Runs; each figure reports the median (and min/max when more than one).")
    var runs = 1

    func validate() throws {
        guard runs > 0 else { throw ValidationError("--runs must be positive") }
    }

    /// The peer runner when `--peers` was given.
    func peerRunner() async throws -> PeerRunner? {
        peers ? try await PeerRunner.locate(python: python, directory: peersDirectory) : nil
    }

    /// The arguments that reproduce these options (for `bench all`).
    var forwarded: [String] {
        var a: [String] = []
        if json { a.append("--json") }
        if peers { a.append("--peers") }
        if let python { a += ["--python", python] }
        if let peersDirectory { a += ["--peers-dir", peersDirectory] }
        a += ["--runs", "\(runs)"]
        return a
    }
}

/// Progress on stderr, so that `--json` output stays clean.
func benchLog(_ text: String) {
    FileHandle.standardError.write(Data(("[bench] " + text + "\n").utf8))
}
