import NIOCore
import NIOHTTP1

/// Answers a request that NIO's HTTP parser refuses (a space in a header name, two
/// Content-Lengths, an unknown method...) with a JSON error that says what was wrong, and closes
/// the connection; Hummingbird answered an empty 400. Headers past the server's limits are 431.
///
/// Only between requests: a request whose head was read and whose body turns out malformed (a
/// bad chunk) is already being answered by its route, which sees its body fail and answers 400
/// itself, so the error goes on as before.
final class MalformedRequestAnswer: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// A request head was read and its response has not ended.
    private var inRequest = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) { inRequest = true }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { inRequest = false }
        context.write(data, promise: promise)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parse = error as? HTTPParserError, !inRequest, context.channel.isActive else { return context.fireErrorCaught(error) }
        let (status, field) = Self.answer(parse)
        let body = #"{"error":"the request is not valid HTTP/1.1 (\#(parse)): nothing done","field":"\#(field)"}"#
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        headers.add(name: "Connection", value: "close")
        inRequest = true
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }

    /// The status and the part of the request a parser error is about.
    static func answer(_ error: HTTPParserError) -> (HTTPResponseStatus, String) {
        switch error {
        case .headerOverflow: (.requestHeaderFieldsTooLarge, "headers")
        case .invalidHeaderToken, .invalidContentLength, .unexpectedContentLength, .lfExpected: (.badRequest, "headers")
        case .invalidMethod: (.badRequest, "method")
        case .invalidURL: (.badRequest, "path")
        case .invalidVersion: (.badRequest, "version")
        case .invalidChunkSize: (.badRequest, "body")
        default: (.badRequest, "request")
        }
    }
}
