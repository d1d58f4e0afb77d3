/// A connected byte stream (plain socket or TLS over a socket).
///
/// Every method may block up to its deadline. They are called only on the thread that owns
/// the connection (its serial dispatch queue), never on the Swift concurrency pool.
protocol ByteStream: AnyObject {
    /// The socket, for shutdown(2) from another thread when a waiting task is cancelled.
    var fileDescriptor: Int32 { get }
    /// TLS protocol and cipher, when this is a TLS stream.
    var tlsDetails: TLSDetails? { get }
    /// Writes every byte, or throws. `written` counts bytes handed to the kernel before a failure.
    func writeAll(_ bytes: UnsafeRawBufferPointer, deadline: Deadline, written: inout Int) throws(RedisError)
    /// Reads at least one byte; throws on end of stream, error or deadline.
    func read(into buffer: UnsafeMutableRawBufferPointer, deadline: Deadline) throws(RedisError) -> Int
    /// Waits until ``read(into:deadline:)`` can make progress, or throws `.timeout` at the deadline.
    /// Used right after a request is written: its reply is rarely there yet, and waiting first
    /// saves a read(2) that would only answer EAGAIN (one system call per round trip).
    func waitUntilReadable(deadline: Deadline) throws(RedisError)
    /// True when the peer has not closed the connection and no unexpected bytes are waiting.
    /// Called before a command is written, so that a connection the server dropped while it was
    /// idle is replaced before the command goes out, not after.
    func isReusable() -> Bool
    func close()
}

/// What TLS session a connection negotiated.
public struct TLSDetails: Sendable, Equatable {
    /// For example `TLSv1.3`.
    public var protocolVersion: String
    /// For example `TLS_AES_256_GCM_SHA384`.
    public var cipher: String
}
