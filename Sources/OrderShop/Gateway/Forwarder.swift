import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1

/// Forwards a command to the service that owns it, unchanged (method, path, query, body), and
/// answers what the owner answered. An owner that cannot be reached gives 503 with a JSON body.
struct Forwarder: Sendable {
    let service: ServiceName
    let directory: ServiceDirectory
    let client: HTTPClient
    let timeout: TimeAmount
    /// The planted defect of ``GatewayOptions/plantedDropsIdempotencyKeys``.
    var dropsIdempotencyKey = false

    func forward(_ request: Request, context: ShopRequestContext) async throws -> Response {
        // A create's key is refused here too: what is forwarded is the key's text, where bytes
        // that are not UTF-8 are already U+FFFD, and the owner could no longer tell two such keys
        // apart. Other commands do not use it: passed on as it is.
        let key =
            dropsIdempotencyKey ? nil : request.method == .post ? try IdempotencyKeyHeader.value(in: request.headers) : request.headers[.idempotencyKey]
        let body = try await request.bodyBytes()
        if let answer = try await forwardInProcess(request, key: key, body: body, context: context) { return answer }
        let baseURL = directory.url(service)
        var outgoing = HTTPClientRequest(url: baseURL + request.uri.path + (request.uri.query.map { "?" + $0 } ?? ""))
        outgoing.method = HTTPMethod(rawValue: request.method.rawValue)
        outgoing.headers.add(name: "Content-Type", value: request.headers[.contentType] ?? "application/json")
        outgoing.headers.add(name: "X-Trace-ID", value: request.traceID)
        if let key { outgoing.headers.add(name: "Idempotency-Key", value: key) }
        // The owner's span continues the gateway's.
        OutgoingTrace.inject(into: &outgoing.headers)
        outgoing.body = .bytes(ByteBuffer(bytes: body))

        let answer: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            answer = try await client.execute(outgoing, timeout: timeout)
            bytes = try await answer.body.collect(upTo: 64 << 20)
        } catch {
            context.logger.warning("\(service) service unreachable at \(baseURL): \(error)")
            if request.method != .get && request.method != .head && Self.mayHaveBeenDelivered(error) {
                // The owner may have run the command and its answer was lost or late.
                // What to do depends on the command: a create has its key; a change or deletion
                // is looked up (a trial's DELETE was told to "retry a create").
                let next =
                    request.method == .post && key != nil
                    ? "retry the create with the same Idempotency-Key (it answers the ids it made)"
                    : "read the entity to learn whether the command holds before you retry it"
                throw ShopError(
                    status: 503,
                    message: "\(service) service unreachable (\(error)): the command may have been applied, its answer was lost or late; \(next)",
                    outcome: "may have been applied")
            }
            throw ShopError.unavailable("\(service) service unreachable")
        }
        var headers = HTTPFields()
        headers[.contentType] = answer.headers.first(name: "Content-Type") ?? "application/json; charset=utf-8"
        if let replayed = answer.headers.first(name: "Idempotent-Replayed") { headers[.idempotentReplayed] = replayed }
        if let retryAfter = answer.headers.first(name: "Retry-After") { headers[.retryAfter] = retryAfter }
        return Response(status: HTTPResponse.Status(code: Int(answer.status.code)), headers: headers, body: ResponseBody(byteBuffer: bytes))
    }

    /// Whether a failed forward may have reached the owner: a timeout, or a connection closed
    /// or reset after the request went out. A connect that failed (nothing listens) never
    /// delivered it. When in doubt it says "may": a false "not applied" could make a client's
    /// retry apply a command twice, a false "may" only makes it look before it retries.
    static func mayHaveBeenDelivered(_ error: any Error) -> Bool {
        if let io = error as? IOError { return io.errnoCode == ECONNRESET || io.errnoCode == EPIPE }
        guard let e = error as? HTTPClientError else { return false }
        return e == .deadlineExceeded || e == .readTimeout || e == .remoteConnectionClosed || e == .writeTimeout
    }

    /// The owner's router called in this process (``InProcessServices``), with the request the
    /// HTTP forward would send; nil when the owner runs elsewhere.
    private func forwardInProcess(_ request: Request, key: String?, body: [UInt8], context: ShopRequestContext) async throws -> Response? {
        guard let services = directory.inProcess, services.runs(service) else { return nil }
        var headers = HTTPFields()
        headers[.contentType] = request.headers[.contentType] ?? "application/json"
        headers[.traceID] = request.traceID
        if let key { headers[.idempotencyKey] = key }
        OutgoingTrace.inject(into: &headers)
        let path = request.uri.path + (request.uri.query.map { "?" + $0 } ?? "")
        guard let answer = try await services.call(service, method: request.method, path: path, headers: headers, body: ByteBuffer(bytes: body))
        else { return nil }
        // What the HTTP forward passes on: the status, the body, its type, the replay flag and
        // a 503's Retry-After.
        var passed = HTTPFields()
        passed[.contentType] = answer.headers[.contentType] ?? "application/json; charset=utf-8"
        if let replayed = answer.headers[.idempotentReplayed] { passed[.idempotentReplayed] = replayed }
        if let retryAfter = answer.headers[.retryAfter] { passed[.retryAfter] = retryAfter }
        return Response(status: answer.status, headers: passed, body: answer.body)
    }
}
