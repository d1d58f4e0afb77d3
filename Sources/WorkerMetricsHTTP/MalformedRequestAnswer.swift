import Foundation
import NIOCore
import NIOHTTP1

/// Answers a request that NIO's HTTP parser refuses (a space in a header name, two
/// Content-Lengths, an unknown method...) with a JSON error that says what was wrong, and ends
/// the connection; Hummingbird answered an empty 400. Headers past the server's limits are 431.
///
/// Only between requests: when every request read has been answered and no request body is
/// still coming. Otherwise the error goes on as before: a request whose body turns out
/// malformed (a bad chunk) is answered by its route, which sees its body fail; one whose
/// response went out before its body was read, or one pipelined behind a request still being
/// answered, gets Hummingbird's own 400 after the responses before it (an answer written here
/// would cut into them: Hummingbird has no pipelining handler before this one).
final class MalformedRequestAnswer: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// Requests read whose response has not ended.
    private var unanswered = 0
    /// A request's head was read and its end has not been.
    private var readingRequest = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            unanswered += 1
            readingRequest = true
        case .end: readingRequest = false
        case .body: break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { unanswered = max(0, unanswered - 1) }
        context.write(data, promise: promise)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parse = error as? HTTPParserError, unanswered == 0, !readingRequest, context.channel.isActive else {
            return context.fireErrorCaught(error)
        }
        let (status, field) = Self.answer(parse)
        let body = Self.body(error: "the request is not valid HTTP/1.1 (\(parse)): nothing done", field: field)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
        headers.add(name: "Content-Length", value: "\(body.count)")
        headers.add(name: "Connection", value: "close")
        unanswered += 1
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in ConnectionEnding.closeGracefully(channel) }
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

    /// `{"error": ..., "field": ...}`, as the shop's errors.
    static func body(error: String, field: String) -> [UInt8] {
        struct Answer: Encodable {
            var error: String
            var field: String
        }
        return (try? Array(JSONEncoder().encode(Answer(error: error, field: field)))) ?? Array(#"{"error":"the request is not valid HTTP/1.1"}"#.utf8)
    }
}
