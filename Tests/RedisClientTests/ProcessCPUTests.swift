import Foundation
import LocalRedis
import Testing

/// The CPU accounting a benchmark uses to say what bounded it (`ordershop bench gateway`).
@Suite(.timeLimit(.minutes(1))) struct ProcessCPUTests {
    @Test("utime and stime are read after the last parenthesis, whatever the command name holds")
    func statLineWithAwkwardName() {
        // A thread may name itself with spaces and parentheses; the fields after the name are
        // state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
        let line = "4242 (a) b (c d) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 9 0 123 456 789\n"
        #expect(ProcessCPU.seconds(statLine: line, ticksPerSecond: 100) == 4.0)
        #expect(ProcessCPU.seconds(statLine: "4242 (x) S 1 2", ticksPerSecond: 100) == nil)
    }

    @Test("the machine's busy time leaves out idle and iowait, and counts guest time once")
    func machineBusy() {
        // user nice system idle iowait irq softirq steal guest guest_nice
        let text = "cpu  100 20 30 1000 50 5 5 0 40 0\ncpu0 50 10 15 500 25 2 3 0 20 0\nintr 1 2 3\n"
        #expect(ProcessCPU.machineBusySeconds(procStat: text, ticksPerSecond: 10) == 16.0)
    }

    @Test("a running child's CPU seconds grow while it works")
    func childCPU() async throws {
        let child = try ChildProcess("sh", ["-c", "while :; do :; done"])
        defer { child.signal(SIGKILL) }
        let first = try #require(ProcessCPU.seconds(pid: child.pid))
        var now = first
        while now < first + 0.2 {
            try await Task.sleep(for: .milliseconds(50))
            now = ProcessCPU.seconds(pid: child.pid) ?? now
        }
        #expect(now >= first + 0.2)
        #expect(ProcessCPU.machineBusySeconds() ?? 0 > 0)
    }
}
