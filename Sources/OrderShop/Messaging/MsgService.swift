import Foundation
import Hummingbird
import RedisClient
import Tracing

/// The msg service: `POST /email {to, msg}` sends one mail (like the original, by logging it) and
/// records it as an entry of the stream `mail:sent` with the fields `key`, `to` and `msg`.
///
/// A mail is sent at most once per `Idempotency-Key`: the marker and the record are written by one
/// script, so a retried request (a worker redelivering an event) finds the marker and sends nothing.
///
/// `mail:sent` keeps the mails of the last ``MsgOptions/keyTTL`` (30 days): each send trims the
/// entries older than that (`MINID ~`, so whole stream nodes of up to 100 entries at a time, at
/// no cost to sends in between). Their markers have expired by then, so the record of a mail
/// goes when its key is forgotten; kept for ever it grew by one entry per mail (trial H: 14,852
/// entries in a trial of about 40 minutes).
public struct MsgOptions: Sendable {
    /// How long a key is remembered, and how long `mail:sent` keeps a mail.
    public var keyTTL: Duration
    /// A deliberate defect for chaos runs (`ordershop serve msg --planted-bug msg-forgets-keys`):
    /// the send does not look for its key's marker, so a worker that asks again for a mail it
    /// handed over before (killed before its settle committed) makes that mail twice. The
    /// harness's checker must see it in `mail:sent` ("duplicate effects").
    public var plantedForgetsKeys = false

    public init(keyTTL: Duration = .seconds(30 * 86_400), plantedForgetsKeys: Bool = false) {
        self.keyTTL = keyTTL
        self.plantedForgetsKeys = plantedForgetsKeys
    }
}

/// The keys of the msg service.
public enum MailKeys {
    /// The stream of every mail sent.
    public static let sent = "mail:sent"
    /// The marker of a sent key. Its hash tag is the stream's name, so that marker and stream
    /// share a Redis Cluster slot.
    public static func marker(_ key: String) -> String { "{\(sent)}:key:\(key)" }
    /// What a refusal writes so that `WAIT` covers the state it rests on (with
    /// `--confirm-replicas`; msg's script never refuses, so it is never written today).
    public static let replicaBarrier = "{\(sent)}:replica-barrier"
}

/// The answer of `POST /email`.
public struct MailReceipt: Codable, Sendable, Hashable {
    /// `sent`, or `duplicate` when the key was sent before (nothing is sent again).
    public var status: String
    /// The `mail:sent` entry of the mail.
    public var id: String
    public var key: String

    public init(status: String, id: String, key: String) {
        self.status = status
        self.id = id
        self.key = key
    }

    /// Written and read with JSONWriter and JSONParser, not Foundation's coders: every mail a
    /// worker sends makes one and reads one, and Foundation's encoder and decoder took 2.4 % of
    /// `ordershop up`'s CPU under `POST /customers` load (perf, 8 s; the welcome mail's request
    /// and receipt).
    var json: [UInt8] { JSONWriter.object([("id", .string(id)), ("key", .string(key)), ("status", .string(status))]) }

    init(json bytes: [UInt8]) throws(ShopError) {
        let fields = try FieldReader(try JSONValue.parse(bytes))
        self.init(status: try fields.string("status"), id: try fields.string("id"), key: try fields.string("key", maxBytes: 512))
    }
}

/// The msg service's router.
public func buildMsgRouter(context: ShopContext, options: MsgOptions = .init()) -> Router<ShopRequestContext> {
    let router = makeServiceRouter(.msg)
    addHealthRoutes(to: router, service: "msg", health: context.health)
    router.post("/email") { request, requestContext in
        try requireJSONBody(request)
        let fields = try FieldReader(try await request.json())
        try fields.refuseUnknown(["to", "msg"], in: "a mail")
        let to = try fields.email("to")
        let msg = try fields.string("msg", maxBytes: FieldLimits.mail)
        let key: String
        if let given = request.headers[.idempotencyKey] {
            guard !given.isEmpty, given.utf8.count <= 512 else {
                throw ShopError.badRequest("the Idempotency-Key header must have 1 to 512 characters", field: "Idempotency-Key")
            }
            key = given
        } else {
            key = "anonymous:" + RandomUUID.string()
        }
        let reply = try await withSpan("script send mail", ofKind: .client) { span in
            if span.isRecording {
                span.updateAttributes { attributes in
                    attributes["db.system.name"] = "redis"
                    attributes["db.operation.name"] = "EVALSHA"
                    attributes["mail.idempotency_key"] = key
                }
            }
            let keys = [RedisArgument(MailKeys.marker(key)), RedisArgument(MailKeys.sent)]
            let arguments = [RedisArgument(key), RedisArgument(to), RedisArgument(msg), RedisArgument(milliseconds: options.keyTTL)]
            // A mail that Redis took but replicas did not confirm answers 503: the worker retries
            // with the same Idempotency-Key and learns "duplicate" if the record survived.
            // "duplicate" is confirmed too (see `sendScript`): the record it found may be that
            // unconfirmed write, and a worker settling on it lost the mail in a failover (CI).
            do {
                return try await context.pool.runCommandScript(
                    options.plantedForgetsKeys ? plantedForgetfulSendScript : sendScript,
                    keys: keys, arguments: arguments, confirmation: context.confirmation, barrier: RedisArgument(MailKeys.replicaBarrier),
                    wrote: { _ in true })
            } catch var error as ShopError where error.outcome == "may have been applied" {
                // In a mail's words: the event store's spoke of creates and entities (a trial).
                error.message =
                    "the mail may have been sent: \(error.uncertainty ?? "its outcome is not known"); send it again with the same Idempotency-Key (it answers \"duplicate\" once the mail is confirmed sent)"
                throw error
            }
        }
        guard let parts = reply.array, parts.count == 2, let status = parts[0].string, let id = parts[1].string else {
            throw RedisError(.unexpectedReply, "mail script answered \(reply)")
        }
        if status == "sent" {
            requestContext.logger.info("mail \(id) to \(LogText.escaped(to)) (\(LogText.escaped(key))): \(LogText.escaped(msg, limit: 60))")
        }
        return JSONResponse.bytes(MailReceipt(status: status, id: id, key: key).json)
    }
    addMethodNotAllowed(to: router, path: "/email", allowed: [.post])
    return router
}

/// KEYS: marker, stream. ARGV: key, to, msg, ttl ms. Answers `{'sent'|'duplicate', entry id}`.
/// Both answers write (a duplicate sets its marker's expiry again, to the TTL from the mail's
/// entry, never later: the entry is trimmed then), so that a `WAIT` after either
/// confirms the record the answer speaks of, which another connection may have written: from
/// Redis 7.2 a connection's replication offset moves only for commands that propagate (see
/// ``RedisClientProtocol/evaluate(_:keys:arguments:confirming:barrier:wrote:)``).
/// A sent mail trims the stream's entries older than the TTL (Redis's clock, as the entry ids'),
/// whose markers are gone.
private let sendScript = makeSendScript(checksMarker: true)

/// The send without its marker check (``MsgOptions/plantedForgetsKeys``, for the chaos harness only).
private let plantedForgetfulSendScript = makeSendScript(checksMarker: false)

private func makeSendScript(checksMarker: Bool) -> RedisScript {
    RedisScript(
    """
    local now = redis.call('TIME')
    local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
    local prev = \(checksMarker ? "redis.call('GET', KEYS[1])" : "false")
    if prev then
      -- A write, but no longer than the mail's own TTL from its entry's time: renewed by each
      -- duplicate, a marker outlived its entry in mail:sent (a review). PEXPIRE, relative: the
      -- ACL users (deploy/redis/users.acl, and access strings made from it) grant no PEXPIREAT.
      local sent_ms = tonumber(string.match(prev, '^(%d+)')) or now_ms
      redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.max(sent_ms + tonumber(ARGV[4]) - now_ms, 1)))
      return {'duplicate', prev}
    end
    local floor = now_ms - tonumber(ARGV[4])
    local id = redis.call('XADD', KEYS[2], 'MINID', '~', string.format('%.0f', math.max(floor, 0)), '*',
                          'key', ARGV[1], 'to', ARGV[2], 'msg', ARGV[3])
    redis.call('SET', KEYS[1], id, 'PX', ARGV[4])
    return {'sent', id}
    """)
}
