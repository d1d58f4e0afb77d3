import RedisClient

/// A failure with the HTTP status it answers, a readable message, and the request field it is
/// about (if any). Serialized as `{"error": message, "field": field}`: never an HTML page.
public struct ShopError: Error, Sendable, Hashable, CustomStringConvertible {
    public var status: Int
    public var message: String
    public var field: String?
    /// For a command whose fate the client must know: `"may have been applied"` when it ran but
    /// could not be confirmed (a create's retry with the same `Idempotency-Key` answers its ids
    /// once confirmed; else the client reads it), `"not applied"` for a refusal not yet confirmed.
    public var outcome: String?
    /// Why the outcome is not known, for a "may have been applied" (not in the body: the
    /// message says it): what an order change says of its stock reservation.
    var uncertainty: String?

    public init(status: Int, message: String, field: String? = nil, outcome: String? = nil) {
        self.status = status
        self.message = message
        self.field = field
        self.outcome = outcome
    }

    /// 400: malformed JSON, a missing field or a field of the wrong kind.
    public static func badRequest(_ message: String, field: String? = nil) -> ShopError {
        ShopError(status: 400, message: message, field: field)
    }

    /// 404: update or delete of an id that does not exist.
    public static func notFound(_ type: EntityType, _ id: String) -> ShopError {
        ShopError(status: 404, message: "no \(type) with id \(id)")
    }

    /// 409: not enough stock, or a uniqueness rule (one stock record per product, one billing per order).
    public static func conflict(_ message: String, field: String? = nil) -> ShopError {
        ShopError(status: 409, message: message, field: field)
    }

    /// 503: the owning service or Redis cannot be reached.
    public static func unavailable(_ message: String) -> ShopError {
        ShopError(status: 503, message: message)
    }

    /// 503: the command ran on the primary, but fewer replicas than asked (`--confirm-replicas`)
    /// acknowledged it in time: a failover now could lose it, or it may survive.
    public static func unconfirmed(acknowledged: Int, wanted: Int) -> ShopError {
        let why = "Redis took it, but \(acknowledged) of the \(wanted) replicas asked for confirmed it in time"
        var error = ShopError(
            status: 503,
            message: "the command may have been applied: \(why); retry a create with the same Idempotency-Key (it answers the ids it made, once confirmed), or read the entity to learn whether the command holds before you retry it",
            outcome: "may have been applied")
        error.uncertainty = why
        return error
    }

    /// 503: Redis refused the command (it changed nothing), but fewer replicas than asked
    /// acknowledged the state it was refused on: the refusal may rest on a write a failover
    /// can still lose (the retry of a create whose first answer was 503 finds "exists").
    public static func unconfirmedRefusal(acknowledged: Int, wanted: Int) -> ShopError {
        ShopError(
            status: 503,
            message: "the command was not applied: Redis refused it, but \(acknowledged) of the \(wanted) replicas asked for confirmed the state it was refused on in time, so a failover could change the answer; retry it",
            outcome: "not applied")
    }

    /// 503: a query with `--confirm-replicas` whose replicas have not confirmed, in time, the
    /// state it read: it may show a write a failover can still lose.
    public static func unconfirmedRead(acknowledged: Int, wanted: Int) -> ShopError {
        ShopError(
            status: 503,
            message: "not answered: \(acknowledged) of the \(wanted) replicas asked for confirmed in time the state this read would show, which a failover could still lose; retry",
            outcome: "not confirmed")
    }

    /// 503: an order change whose process took so long between its steps that the reservation
    /// reaper aborted it (``OrderSteps``): nothing of it holds; send it again.
    public static var stepAborted: ShopError {
        ShopError(
            status: 503,
            message: "the command was not applied: it took longer than the stock reservation's grace time, so its reservation was released; send it again",
            outcome: "not applied")
    }

    /// 503: an order change whose stock reservation (step 1 of ``OrderSteps``) may hold but is
    /// not known to (unconfirmed by the replicas, or its answer lost): the change itself (step 2)
    /// was not made, and units the reservation took go back when the reaper ends it.
    static func reservationUncertain(_ cause: ShopError) -> ShopError {
        ShopError(
            status: 503,
            message: "the order change was not applied: its stock reservation may hold (\(cause.uncertainty ?? cause.message)); units it holds go back when the reservation reaper ends it; send the change again (a create with the same Idempotency-Key reserves for the same orders)",
            outcome: "not applied")
    }

    /// 503: Redis, full (maxmemory), refused an order change's second step after its stock
    /// reservation (step 1) was made: the change was not made, but "did not run" (the OOM answer
    /// of other commands) would be untrue: the reservation took units and appended its stock
    /// event (a review). The reaper returns the units once Redis has room to end it.
    static var orderChangeRefusedFull: ShopError {
        ShopError(
            status: 503,
            message: "event store unavailable: Redis is out of memory (its maxmemory is reached); the order change was not made, and the stock its reservation took goes back once Redis has room again; send it again once an operator has raised maxmemory (a create with the same Idempotency-Key reserves for the same orders)",
            outcome: "not applied")
    }

    public var description: String {
        "\(status): \(message)" + (field.map { " (field \($0))" } ?? "")
    }

    /// The JSON body.
    public var body: [UInt8] {
        var fields: [(String, JSONValue)] = [("error", .string(message))]
        if let field { fields.append(("field", .string(field))) }
        if let outcome { fields.append(("outcome", .string(outcome))) }
        return JSONWriter.object(fields)
    }

    /// 503: a command's write was sent to Redis and its answer was lost or late
    /// (``RedisError/Code/outcomeUnknown``, ``RedisError/Code/timeout``): it may have run, and
    /// the answer says so, as an unconfirmed command's does (a blind retry could apply it
    /// twice). Made where the write is sent (``RedisClientProtocol/runCommandScript(_:keys:arguments:confirmation:barrier:wrote:)``),
    /// not for a read before it: a timeout there is a plain 503, the command never went out.
    public static func mayHaveBeenApplied(_ error: RedisError) -> ShopError {
        var shopError = ShopError(
            status: 503,
            message: "event store unavailable (\(error.code)): the command may have been applied, Redis's answer was lost or late; retry a create with the same Idempotency-Key (it answers the ids it made), or read the entity to learn whether the command holds before you retry it",
            outcome: "may have been applied")
        shopError.uncertainty = "Redis's answer was lost or late (\(error.code))"
        return shopError
    }

    /// A Redis error reply without where in a script it arose, which tells a client nothing
    /// (the logs keep the whole reply): Redis 7's " script: <sha>, on @user_script:62." after
    /// a command's error, and "Error running script (call to f_<sha>): @user_script:12: "
    /// before a script's own.
    public static func withoutScriptLocation(_ message: String) -> String {
        var text = Substring(message)
        if let at = text.range(of: " script: ", options: .backwards), text[at.upperBound...].contains(", on @user_script:") {
            text = text[..<at.lowerBound]
        }
        if let call = text.range(of: "Error running script (call to "), let line = text[call.upperBound...].range(of: "@user_script:"),
            let colon = text[line.upperBound...].firstIndex(of: ":")
        {
            text = text[..<call.lowerBound] + text[text.index(after: colon)...].drop { $0 == " " }
        }
        return String(text)
    }

    /// Maps any error to the status a client should see: Redis being unreachable is a 503 (the
    /// request may be retried), anything unexpected a 500 with a JSON body.
    public static func from(_ error: any Error) -> ShopError {
        if let e = error as? ShopError { return e }
        if let e = error as? RedisError {
            // Redis refused our credentials: the service cannot work until an operator fixes its
            // configuration, which no client request can change; Redis's text stays in our logs.
            if e.code == .wrongPassword || e.code == .noAuth {
                return .unavailable("event store unavailable: Redis refused this service's credentials")
            }
            // Its ACL user may not use a key or command (NOPERM), or a script's command on a key
            // it may not touch (Redis answers that one with ERR: it was a 500 carrying the
            // script's sha and line; a user-style pass gave the customer service the CRM
            // worker's user). No request can fix it, as above.
            if e.isACLRefusal {
                return .unavailable("event store unavailable: this service's Redis user may not use the keys it needs (its ACL; see deploy/redis/users.acl)")
            }
            // Redis answered that it serves nobody now (a cluster that lost a shard, a primary
            // being replaced, a server loading its data or busy with a script): the command did
            // not run, and the same request may succeed later. The cluster client retries these
            // within its window first; what is left was a 500 "CLUSTERDOWN The cluster is down"
            // after 15 s (a user-style trial stopped a primary whose replica could not take over).
            // Redis is full and refuses writes (maxmemory with noeviction, which the services
            // require: EvictionPolicyCheck). It refuses a script at its first write that may
            // grow memory, before any other write, and a command before it runs, so nothing was
            // written. It was a 500 carrying the script's sha and line.
            if e.code == .outOfMemory {
                // Said as "not applied", so that a client (and the chaos checker) may rely on it.
                return ShopError(
                    status: 503,
                    message: "event store unavailable: Redis is out of memory (its maxmemory is reached); the command did not run, retry it once an operator has raised maxmemory",
                    outcome: "not applied")
            }
            if e.isClusterRedirect || [.loading, .readOnly, .busy].contains(e.code) {
                // The limit leaves room for every shard a cluster lost (the operations view names each).
                let reply = LogText.escaped(withoutScriptLocation(e.message), limit: 2000)
                // A trial's demoted primary answered every POST with Redis's READONLY and the
                // script's sha and line, and nothing a client or operator could act on.
                let hint =
                    switch e.code {
                    case .readOnly: " (the shop's Redis answers as a replica: a failover is under way, or the URL names a replica; the command did not run, retry it)"
                    // A trial's slow slot migration answered every create of the type "ASK 6651 ...".
                    case .ask, .tryAgain:
                        " (a slot of the shop is being moved between cluster nodes: a command on several of its keys waits for the move to end; the command did not run, retry it)"
                    default: ""
                    }
                return .unavailable("event store unavailable: \(reply)\(hint)")
            }
            if e.code.isServerError {
                return ShopError(status: 500, message: "event store error: \(withoutScriptLocation(e.message))")
            }
            // In words, without the client's code name (a trial's GET read "event store
            // unavailable: outcomeUnknown") and without Redis's address (clients need neither).
            let words =
                switch e.code {
                case .connectionRefused, .hostNotFound: "Redis cannot be reached"
                case .connectTimeout, .timeout: "Redis did not answer in time"
                case .connectionClosed, .outcomeUnknown, .io: "the connection to Redis was lost"
                // Trial J: "event store unavailable: tlsHandshakeFailed" while a primary died (its
                // reason, OpenSSL's, is in the service's log line of the request).
                case .tlsHandshakeFailed, .tlsVerifyFailed, .tlsHostnameMismatch, .tlsConfiguration: "a TLS connection to Redis failed"
                default: "\(e.code)"
                }
            return .unavailable("event store unavailable: \(words)")
        }
        return ShopError(status: 500, message: "internal error: \(error)")
    }
}
