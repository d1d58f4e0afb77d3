import AsyncHTTPClient
import NIOCore
import NIOHTTP1

/// A small HTTP client for the OrderShop gateway, speaking the original's contract (the demo and
/// the tests use it).
public struct ShopClient: Sendable {
    public let baseURL: String
    public let client: HTTPClient

    public init(baseURL: String, client: HTTPClient) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.client = client
    }

    /// One answer: status, raw body, and the body as JSON when it is JSON.
    public struct Reply: Sendable, CustomStringConvertible {
        public var status: Int
        public var body: [UInt8]
        public var contentType: String?
        /// `Idempotent-Replayed: true`: a create's ids made by an earlier request with its key.
        public var replayed = false
        public var json: JSONValue? { try? JSONCoding.decode(JSONValue.self, from: body) }
        public var text: String { String(decoding: body, as: UTF8.self) }
        public var description: String { "\(status) \(text.prefix(300))" }
        /// The ids a POST answered.
        public var ids: [String] { json?.arrayValue?.compactMap(\.stringValue) ?? [] }
    }

    public func get(_ path: String) async throws -> Reply { try await send(.GET, path, body: nil) }
    public func post(_ path: String, _ body: JSONValue) async throws -> Reply { try await send(.POST, path, body: JSONCoding.encode(body)) }
    /// A create that may be retried: with the same `key` and body it creates once.
    public func post(_ path: String, _ body: JSONValue, idempotencyKey key: String) async throws -> Reply {
        try await send(.POST, path, body: JSONCoding.encode(body), headers: [("Idempotency-Key", key)])
    }
    public func put(_ path: String, _ body: JSONValue) async throws -> Reply { try await send(.PUT, path, body: JSONCoding.encode(body)) }
    public func delete(_ path: String) async throws -> Reply { try await send(.DELETE, path, body: nil) }

    /// Sends raw bytes (for malformed bodies).
    public func send(_ method: HTTPMethod, _ path: String, body: [UInt8]?, headers: [(String, String)] = []) async throws -> Reply {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let body {
            // JSON unless the caller says otherwise (two Content-Types are refused).
            if !headers.contains(where: { $0.0.lowercased() == "content-type" }) {
                request.headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
            }
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let response = try await client.execute(request, timeout: .seconds(60))
        let bytes = try await response.body.collect(upTo: 256 << 20)
        return Reply(
            status: Int(response.status.code), body: Array(bytes.readableBytesView), contentType: response.headers.first(name: "Content-Type"),
            replayed: response.headers.first(name: "Idempotent-Replayed") == "true")
    }

    /// GET a list and answer its length (nil when the answer is not a JSON array).
    public func count(_ path: String) async throws -> Int? {
        try await get(path).json?.arrayValue?.count
    }
}
