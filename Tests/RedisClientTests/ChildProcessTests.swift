import Foundation
import LocalRedis
import Testing

/// Child processes under cancellation: waiting ends with the task, stopping (clean-up) does not.
@Suite(.timeLimit(.minutes(1))) struct ChildProcessTests {
    @Test("waiting for a child in a cancelled task returns at once, leaving it running")
    func cancelledWaitReturns() async throws {
        let child = try ChildProcess("sleep", ["30"])
        let waited = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return await child.waitForExit(timeout: .seconds(3600))  // a spinning wait would hit the time limit
        }
        #expect(await waited.value == nil)
        #expect(child.isRunning)
        #expect(await child.stop(signal: SIGKILL) == 128 + SIGKILL)
    }

    @Test("stopping a child in a cancelled task still stops and reaps it")
    func stopInCancelledTask() async throws {
        let child = try ChildProcess("sleep", ["30"])
        let stopped = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return await child.stop(signal: SIGTERM)
        }
        #expect(await stopped.value == 128 + SIGTERM)
        #expect(!child.isRunning)
        #expect(kill(child.pid, 0) != 0)
    }

    @Test("a child inherits stdin, stdout and stderr only, not the parent's other descriptors")
    func childInheritsNoOtherDescriptors() async throws {
        // A pipe without FD_CLOEXEC, as Foundation's Process makes for the child it monitors.
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let child = try ChildProcess("sleep", ["30"])
        defer { child.signal(SIGKILL) }
        let inherited = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(child.pid)/fd").compactMap { Int32($0) }.sorted()
        #expect(inherited == [0, 1, 2], "the child holds descriptors \(inherited)")
        #expect(await child.stop(signal: SIGKILL) == 128 + SIGKILL)
    }
}
