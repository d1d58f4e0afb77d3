import NIOCore

/// Ends a connection after its last response without losing that response: closing both ways
/// while the client is still sending (a body nobody read) makes the kernel answer with a reset,
/// and the client may drop the response it had not read yet. So the output is closed first (the
/// client reads the response, then end of stream) and the connection only after a grace period
/// in which the client closes its side.
enum ConnectionEnding {
    static let grace: TimeAmount = .seconds(2)

    static func closeGracefully(_ channel: any Channel) {
        channel.close(mode: .output, promise: nil)
        channel.eventLoop.scheduleTask(in: grace) { channel.close(promise: nil) }
    }
}
