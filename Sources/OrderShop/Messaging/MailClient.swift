import AsyncHTTPClient
import Foundation
import HTTPTypes
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

    /// msg wherever the directory says it is at the time of each mail (in this process when
    /// the directory has it there: ``InProcessServices``).
    public init(directory: ServiceDirectory, client: HTTPClient, timeout: TimeAmount = .seconds(10)) {
        self.init(client: client, timeout: timeout, inProcess: directory.inProcess) { directory.url(.msg) }
    }

    private init(client: HTTPClient, timeout: TimeAmount, inProcess: InProcessServices? = nil, base: @escaping @Sendable () -> String) {
        self.base = base
        self.client = client
        self.timeout = timeout
        self.inProcess = inProcess
    }

    private let inProcess: InProcessServices?

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
        let key = plantedRandomKeys ? UUID().uuidString : idempotencyKey
        let mail = ByteBuffer(bytes: JSONWriter.object([("msg", .string(msg)), ("to", .string(to))]))
        if let inProcess, inProcess.runs(.msg) { return try await postInProcess(inProcess, mail: mail, idempotencyKey: key) }
        var request = HTTPClientRequest(url: baseURL + "/email")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Idempotency-Key", value: key)
        OutgoingTrace.inject(into: &request.headers)
        request.body = .bytes(mail)
        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await client.execute(request, timeout: timeout)
            body = try await response.body.collect(upTo: 1 << 20)
        } catch {
            throw Failure.unavailable(Self.describe(error))
        }
        return try Self.receipt(status: Int(response.status.code), body: body)
    }

    /// What went wrong reaching msg, in words: NIO's own text for a refused connect reads
    /// "connection reset (error set): Connection refused) (errno: 111)" (a user-style test).
    static func describe(_ error: any Error) -> String {
        guard let io = error as? IOError else { return "\(error)" }
        return "\(String(cString: strerror(io.errnoCode))) (errno \(io.errnoCode))"
    }

    /// msg's router called in this process, with the request the HTTP post would send.
    private func postInProcess(_ services: InProcessServices, mail: ByteBuffer, idempotencyKey: String) async throws -> MailReceipt {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        headers[.idempotencyKey] = idempotencyKey
        OutgoingTrace.inject(into: &headers)
        let body: ByteBuffer
        let status: Int
        do {
            guard
                let answer = try await services.call(
                    .msg, method: .post, path: "/email", headers: headers, body: mail)
            else { throw Failure.unavailable("msg does not run in this process") }
            status = answer.status.code
            body = try await InProcessServices.collect(answer.body, upTo: 1 << 20)
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure.unavailable("\(error)")
        }
        return try Self.receipt(status: status, body: body)
    }

    /// msg's answer as a receipt, or the failure it says.
    private static func receipt(status: Int, body: ByteBuffer) throws -> MailReceipt {
        let text = { String(buffer: body) }
        switch status {
        case 200..<300:
            do { return try MailReceipt(json: Array(body.readableBytesView)) } catch {
                throw Failure.unavailable("unexpected answer: \(text().prefix(200))")
            }
        case 400..<500 where status != 408 && status != 429:
            throw Failure.rejected(status: status, body: String(text().prefix(500)))
        default:
            throw Failure.unavailable("status \(status): \(text().prefix(200))")
        }
    }
}
