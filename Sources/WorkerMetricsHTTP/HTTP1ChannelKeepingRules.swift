import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypesHTTP1

/// Hummingbird's HTTP/1.1 channel with ``RequestHeadRefusal``, ``ContinueAnswer``,
/// ``MalformedRequestAnswer`` and ``PersistentConnectionRules`` before its conversion to the
/// HTTP types.
struct HTTP1ChannelKeepingRules: ServerChildChannel, HTTPChannelHandler {
    typealias Value = HTTP1Channel.Value
    let http1: HTTP1Channel
    /// No `100 Continue` for a declared body larger (``ContinueAnswer``).
    let maximumBodyBytes: Int

    var responder: HTTPChannelHandler.Responder { http1.responder }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        http1.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let pipeline = channel.pipeline.syncOperations
            let conversion = try pipeline.handler(type: HTTP1ToHTTPServerCodec.self)
            let malformed = MalformedRequestAnswer()
            try pipeline.addHandler(malformed, position: .before(conversion))
            try pipeline.addHandler(PersistentConnectionRules(), position: .before(conversion))
            // Nearest the parser: its 100 goes straight to the encoder, unseen by the two above,
            // which count and rewrite the final answers.
            let continueAnswer = ContinueAnswer(maximumBodyBytes: maximumBodyBytes)
            try pipeline.addHandler(continueAnswer, position: .before(malformed))
            // Nearer still: a request refused from its head gets no 100 and reaches no route.
            try pipeline.addHandler(RequestHeadRefusal(), position: .before(continueAnswer))
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await http1.handle(value: value, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 as Hummingbird's `.http1(configuration:)`, keeping HTTP/1.x's connection rules
    /// (``PersistentConnectionRules``), answering what its parser refuses in JSON
    /// (``MalformedRequestAnswer``) and cutting slow and idle clients off (``SlowClientGuard``,
    /// `limits`' deadlines): every server of the `ordershop` binary (the shop's services and
    /// gateway, the dashboard, a worker's metrics). The connection ceiling is the application
    /// configuration's (``HTTPServerLimits/applicationConfiguration(address:serverName:)``).
    public static func http1KeepingConnectionRules(limits: HTTPServerLimits) -> HTTPServerBuilder {
        let idle = limits.idleTimeout.components
        let configuration = HTTP1Channel.Configuration(
            additionalChannelHandlers: [SlowClientGuard(limits: limits)],
            idleTimeout: .nanoseconds(idle.seconds * 1_000_000_000 + idle.attoseconds / 1_000_000_000))
        return HTTPServerBuilder { responder in
            HTTP1ChannelKeepingRules(http1: HTTP1Channel(responder: responder, configuration: configuration), maximumBodyBytes: limits.maximumBodyBytes)
        }
    }
}

extension HTTPServerLimits {
    /// An application's configuration at `address` that accepts at most ``maximumConnections``
    /// open connections (Hummingbird stops accepting at the ceiling and goes on when one closes).
    public func applicationConfiguration(address: BindAddress, serverName: String? = nil) -> ApplicationConfiguration {
        ApplicationConfiguration(
            address: address, serverName: serverName, availableConnectionsDelegate: MaximumAvailableConnections(maximumConnections))
    }
}
