import Foundation
import AsyncHTTPClient
import NIOCore
import Tracing

/// Sends mails through the msg service (`POST /email`) with an idempotency key, so that a mail
/// handed over twice (an event redelivered after a crash) is sent once.
public struct MailClient: Sendable {
    private let base: @Sendable () -> String
    public let client: HTTPClient
    public let timeout: TimeAmount
    /// A planted bug for the chaos harness: every mail gets a random key, so msg cannot
    /// recognise a redelivered one. Never set in production.
    public var plantedRandomKeys = false

    /// msg's base URL.
    public var baseURL: String { base() }

    public init(baseURL: String, client: HTTPClient, timeout: TimeAmount = .seconds(10)) {
        var url = baseURL
        while url.hasSuffix("/") { url.removeLast() }
        let fixed = url
        self.init(client: client, timeout: timeout) { fixed }
    }

    /// msg wherever the directory says it is at the time of each mail.
    public init(directory: ServiceDirectory, client: HTTPClient, timeout: TimeAmount = .seconds(10)) {
        self.init(client: client, timeout: timeout) { directory.url(.msg) }
    }

    private init(client: HTTPClient, timeout: TimeAmount, base: @escaping @Sendable () -> String) {
        self.base = base
        self.client = client
        self.timeout = timeout
    }

    /// Why a mail could not be sent.
    public enum Failure: Error, CustomStringConvertible {
        /// msg refused the mail (4xx): sending it again will not help.
        case rejected(status: Int, body: String)
        /// msg could not be reached or failed (5xx): worth a retry.
        case unavailable(String)

        public var description: String {
            switch self {
            case .rejected(let status, let body): "msg rejected the mail (\(status)): \(body)"
            case .unavailable(let reason): "msg unavailable: \(reason)"
            }
        }
    }

    /// Sends a mail; answers msg's receipt (`sent`, or `duplicate` when the key was sent before).
    ///
    /// In a span of its own ("send mail"), whose context travels as the request's `traceparent`:
    /// msg's span continues it.
    @discardableResult
    public func send(to: String, msg: String, idempotencyKey: String) async throws -> MailReceipt {
        try await withSpan("send mail", ofKind: .client) { span in
            let receipt = try await post(to: to, msg: msg, idempotencyKey: idempotencyKey)
            if span.isRecording {
                span.updateAttributes { attributes in
                    attributes["mail.idempotency_key"] = idempotencyKey
                    attributes["mail.status"] = receipt.status
                    attributes["mail.id"] = receipt.id
                }
            }
            return receipt
        }
    }

    private func post(to: String, msg: String, idempotencyKey: String) async throws -> MailReceipt {
        var request = HTTPClientRequest(url: baseURL + "/email")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Idempotency-Key", value: plantedRandomKeys ? UUID().uuidString : idempotencyKey)
        OutgoingTrace.inject(into: &request.headers)
        request.body = .bytes(ByteBuffer(bytes: JSONCoding.encode(["to": to, "msg": msg])))
        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await client.execute(request, timeout: timeout)
            body = try await response.body.collect(upTo: 1 << 20)
        } catch {
            throw Failure.unavailable("\(error)")
        }
        let text = String(buffer: body)
        switch response.status.code {
        case 200..<300:
            do { return try JSONCoding.decode(MailReceipt.self, from: body.readableBytesView) } catch {
                throw Failure.unavailable("unexpected answer: \(text.prefix(200))")
            }
        case 400..<500 where response.status.code != 408 && response.status.code != 429:
            throw Failure.rejected(status: Int(response.status.code), body: String(text.prefix(500)))
        default:
            throw Failure.unavailable("status \(response.status.code): \(text.prefix(200))")
        }
    }
}
