import Foundation

/// The one thread every ``ChildProcess`` is spawned from.
///
/// Why a thread of its own: a child's parent-death signal (`PR_SET_PDEATHSIG`, prctl(2)) comes
/// when the *thread* that spawned it ends, not its process. The threads of Swift's cooperative
/// pool come and go with the load, so a child spawned from one of them would be killed some
/// idle seconds later, its parent alive. This thread lives as long as the process.
final class SpawnThread: @unchecked Sendable {
    static let shared = SpawnThread()

    private let condition = NSCondition()
    /// Guarded by `condition`.
    private var jobs: [() -> Void] = []

    private init() {
        let thread = Thread { [self] in loop() }
        thread.name = "child-spawner"
        thread.start()
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
    }

    /// Runs `body` on the spawning thread and returns its result. The caller waits for it, as it
    /// would for its own posix_spawn: about a millisecond.
    func run<T>(_ body: @escaping () -> T) -> T {
        let box = ResultBox<T>()
        condition.lock()
        jobs.append {
            box.value = body()
            box.done.signal()
        }
        condition.signal()
        condition.unlock()
        box.done.wait()
        return box.value!
    }

    private final class ResultBox<T>: @unchecked Sendable {
        var value: T?
        let done = DispatchSemaphore(value: 0)
    }
}
