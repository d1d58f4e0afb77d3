import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Lets another thread wake a connection that is blocked in poll(2) (for example when the task
/// that waits on a `XREADGROUP BLOCK` is cancelled), by shutting the socket down.
///
/// The lock makes sure that the descriptor is never shut down after the connection closed it
/// (and the number could belong to another file).
final class Interrupter: Sendable {
    private struct State {
        var fileDescriptor: Int32 = -1
        var interrupted = false
        /// The operation that may be interrupted now (0: none).
        var operation: UInt64 = 0
    }
    private let state = Mutex(State())

    /// The connection's new socket. When the running operation was interrupted before the socket
    /// existed (cancelled while it reconnected), the socket is shut down at once: otherwise the
    /// interruption would be lost and a blocking command would wait out its whole timeout.
    func attach(_ fd: Int32) {
        state.withLock {
            $0.fileDescriptor = fd
            if $0.operation != 0 && $0.interrupted { shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    /// Marks `operation` as running; only it can be interrupted until ``end()``.
    func begin(_ operation: UInt64) {
        state.withLock {
            $0.operation = operation
            $0.interrupted = false
        }
    }

    /// Ends the operation. An interruption that came too late to matter is forgotten here, so
    /// that it is never blamed for a later command's failure.
    func end() {
        state.withLock {
            $0.operation = 0
            $0.interrupted = false
        }
    }

    func detach() {
        state.withLock { $0.fileDescriptor = -1 }
    }

    /// Shuts the socket down: the blocked call returns, and the command fails as cancelled.
    func interrupt(_ operation: UInt64) {
        state.withLock {
            guard $0.operation == operation else { return }
            $0.interrupted = true
            if $0.fileDescriptor >= 0 { shutdown($0.fileDescriptor, Int32(SHUT_RDWR)) }
        }
    }

    /// Whether the running operation was interrupted, without forgetting it.
    var isInterrupted: Bool { state.withLock { $0.interrupted } }

    func consumeInterrupted() -> Bool {
        state.withLock { s in
            defer { s.interrupted = false }
            return s.interrupted
        }
    }
}
