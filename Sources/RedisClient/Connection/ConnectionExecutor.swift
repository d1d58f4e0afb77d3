import Dispatch

/// A `TaskExecutor` that runs jobs on a connection's own serial queue.
///
/// A task that prefers it (``RedisConnection/withPinnedExecution(_:)``) runs on the thread
/// that does the connection's blocking I/O, so a command needs no thread switch at all: the
/// caller's code and the socket calls take turns on one thread, as in a C client's event loop.
/// Without it every command costs two switches (to the connection's queue and back), which
/// on a busy two-core machine costs more than the round trip itself.
final class ConnectionExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked: DispatchQueue is thread safe, and the key is only ever read.
    let queue: DispatchQueue
    private let key = DispatchSpecificKey<Bool>()
    /// Set on every connection's queue.
    private static let anyConnectionKey = DispatchSpecificKey<Bool>()

    init(queue: DispatchQueue) {
        self.queue = queue
        queue.setSpecific(key: key, value: true)
        queue.setSpecific(key: Self.anyConnectionKey, value: true)
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        queue.async { job.runSynchronously(on: executor) }
    }

    /// True while the current thread runs a job or block of this queue.
    var isCurrent: Bool { DispatchQueue.getSpecific(key: key) == true }

    /// True while the current thread runs a job or block of any connection's queue (a task
    /// pinned to a connection: ``RedisConnection/withPinnedExecution(_:)``).
    static var isOnAnyConnection: Bool { DispatchQueue.getSpecific(key: anyConnectionKey) == true }
}
