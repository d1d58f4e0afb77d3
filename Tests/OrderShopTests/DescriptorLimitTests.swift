import Foundation
import LocalRedis
import TestSupport
import Testing
import WorkerMetricsHTTP

/// The `ordershop` executable raises its soft descriptor limit to the hard one at start: started
/// with the soft limit most shells give (1,024), `ordershop up`'s servers could together take more
/// descriptors than that, and a process out of descriptors is stopped by libdispatch.
@Suite struct DescriptorLimitTests {
    @Test func aServiceStartedWithASoftLimitOf1024RunsWithTheHardLimit() async throws {
        let hard = try #require(DescriptorLimit.current?.hard)
        try #require(hard > 1_024, "this test needs a hard descriptor limit above 1,024 (it has \(hard))")
        let port = try LocalRedisServer.freePort()
        // No Redis at port 1: the service waits for it, answering 503, which is all this needs.
        let command = "ulimit -Sn 1024 && exec '\(try builtProduct("ordershop"))' serve msg --url redis://127.0.0.1:1 --port \(port)"
        let child = try ChildProcess("/bin/sh", ["-c", command])
        defer { Task { _ = await child.stop(signal: SIGKILL) } }
        // The launcher's and the shell's limits come first (the pid is kept across the execs):
        // only the limit of the process once it is `ordershop` counts.
        var soft: Int?
        let raised = await eventually {
            guard Self.name(of: child.pid) == "ordershop" else { return false }
            soft = Self.softLimit(of: child.pid)
            return soft == hard
        }
        #expect(raised, "the service's soft limit is \(soft.map(String.init) ?? "unread"), its hard limit \(hard)")
    }

    static func name(of pid: Int32) -> String? {
        (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `ordershop up`'s eleven servers together accept fewer connections than the process may
    /// open, beside what is kept for Redis and the clients, from about 400 descriptors up: with
    /// the old floor of 256 per server, 2,816 at a limit of 1,024.
    @Test(arguments: [400, 1_024, 4_096, 20_000, 65_536, 1_048_576])
    func theServersTogetherStayUnderTheLimit(limit: Int) {
        let each = HTTPServerLimits.maximumConnections(forDescriptorLimit: limit)
        #expect(each * 11 + min(1_024, limit / 4) <= limit, "\(each) per server at a limit of \(limit)")
        #expect(each >= 16 && each <= 16_384)
        // Not below the shop's own HTTP clients' 64 connections per service, from 1,024 up.
        if limit >= 1_024 { #expect(each >= 64, "\(each) per server at a limit of \(limit)") }
    }

    @Test func aLargeLimitKeepsItsCeiling() {
        #expect(HTTPServerLimits.maximumConnections(forDescriptorLimit: 20_000) == 1_186)
    }

    /// The soft "Max open files" of a process, from `/proc/<pid>/limits`.
    static func softLimit(of pid: Int32) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8) else { return nil }
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Max open files") }) else { return nil }
        return line.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first.flatMap { Int($0) }
    }
}
