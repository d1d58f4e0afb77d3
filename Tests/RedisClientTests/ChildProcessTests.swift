import Foundation
import LocalRedis
import Synchronization
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

    // A child gets its parent-death signal when the *thread* that spawned it ends: started from
    // a pool thread that later idles out, it would be killed with its parent alive. So every
    // child is spawned from one thread that lives as long as the process (SpawnThread).
    @Test("a child outlives the thread that started it (its parent-death signal follows the process, not the thread)")
    func childOutlivesItsStartingThread() async throws {
        let started = Mutex<Result<ChildProcess, any Error>?>(nil)
        let finished = DispatchSemaphore(value: 0)
        let thread = Thread {
            let child = Result { try ChildProcess("sleep", ["30"]) }
            started.withLock { $0 = child }
            // The thread ends only once the child runs `sleep`: setpriv has set the signal by
            // then (ended before, the thread would leave the child nothing to send).
            if case .success(let child) = child {
                for _ in 0..<500 where (try? String(contentsOfFile: "/proc/\(child.pid)/comm", encoding: .utf8)) != "sleep\n" {
                    usleep(10_000)
                }
            }
            finished.signal()
        }
        thread.start()
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                finished.wait()
                continuation.resume()
            }
        }
        let child = try #require(try started.withLock { $0 }?.get())
        defer { child.signal(SIGKILL) }
        // The thread has ended (it signalled as its last act); give a death signal time to land.
        try await Task.sleep(for: .milliseconds(300))
        #expect(child.isRunning, "the child died with the thread that started it")
        #expect(await child.stop(signal: SIGKILL) == 128 + SIGKILL)
    }

    @Test("a child inherits stdin, stdout and stderr only, not the parent's other descriptors")
    func childInheritsNoOtherDescriptors() async throws {
        // A pipe without FD_CLOEXEC, as Foundation's Process makes for the child it monitors.
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let pipeEnds = Set(fds.map { Self.target(of: "/proc/self/fd/\($0)") })
        let child = try ChildProcess("sleep", ["30"])
        defer { child.signal(SIGKILL) }
        // The child's own descriptors are not inheritance: while the dynamic loader of a child slowed
        // by a loaded machine opens its libraries, the child briefly holds descriptor 3 (seen in CI:
        // [0, 1, 2, 3]). So the test asks what each descriptor refers to: never the parent's pipe.
        let directory = "/proc/\(child.pid)/fd"
        let held = try FileManager.default.contentsOfDirectory(atPath: directory).compactMap { Int32($0) }.filter { $0 > 2 }
        let inherited = held.map { Self.target(of: "\(directory)/\($0)") }.filter { pipeEnds.contains($0) }
        #expect(inherited.isEmpty, "the child holds the parent's pipe: \(inherited)")
        #expect(await child.stop(signal: SIGKILL) == 128 + SIGKILL)
    }

    /// What a descriptor refers to, as `/proc` names it (`pipe:[inode]`, a path...).
    private static func target(of link: String) -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: link)) ?? "gone"
    }
}
