import Synchronization

/// Follows a failover behind one endpoint for every connection made from one pool (its pooled
/// and dedicated connections): a generation that moves on when the server turned out to be a
/// replica, after which each pooled connection made before reconnects when it is next lent
/// (through the host name, which a managed service moves to the new primary).
///
/// Three things move it: a `READONLY` reply on any of the connections, a health probe that
/// finds a replica (``RedisConnectionPool/probe()``, at most once per interval), and a role check
/// (``RedisConfiguration/roleCheckInterval``) that finds a replica behind an endpoint that has
/// led to a primary before: at each check until the name leads to a primary again (connections
/// made while it still led to the demoted node are moved on at the next check). A server that
/// was a replica from the start (a URL naming one) is not checked into moving it: its
/// connections would only reconnect to it again (a write's READONLY there still moves it, at
/// most once per interval).
///
/// Checked at the first command of each lease of a pooled connection, never between the
/// commands of one lease; a dedicated connection (a worker's blocking reader) is not checked:
/// its reads are writes, and meet READONLY themselves.
final class ServerRoleWatch: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var lastCheck: ContinuousClock.Instant?
        /// A check or a command found the primary behind the endpoint at some time.
        var primarySeen = false
        /// The server refused `HELLO` (without arguments: before Redis 6.2): not asked again.
        var disabled = false
        /// The last move of the generation.
        var lastMove: ContinuousClock.Instant?
    }
    private let state = Mutex(State())

    /// nil: no periodic check (a `READONLY` still moves the generation on).
    let interval: Duration?

    init(interval: Duration?) {
        self.interval = interval
    }

    /// Whether connections ask their server's role: a check interval is set, and the server
    /// has not refused `HELLO`.
    var asksRole: Bool { interval != nil && state.withLock { !$0.disabled } }

    /// A connection was made to a server of this role: a primary there is what a later check
    /// compares with. It moves nothing itself: while the name still leads to a demoted node,
    /// every reconnect would move every other connection again.
    func connected(role: String) {
        if role == "master" { state.withLock { $0.primarySeen = true } }
    }

    var generation: UInt64 { state.withLock { $0.generation } }

    /// The server of a connection refused a write as a replica (READONLY). At most once per
    /// interval (1 s without one): while the name still leads to the demoted node every
    /// reconnect meets READONLY again, and a move per READONLY would reconnect the whole pool
    /// at the rate of its writes.
    func demoted(now: ContinuousClock.Instant = .now) {
        state.withLock { s in moveOn(&s, now: now) }
    }

    /// Whether a connection made to a replica at `connectedAt` should try the name again: a
    /// primary was seen behind it, and the connection is older than the interval.
    func leavesReplica(connectedAt: ContinuousClock.Instant, now: ContinuousClock.Instant = .now) -> Bool {
        state.withLock { s in
            guard s.primarySeen, let interval else { return false }
            return connectedAt.duration(to: now) >= interval
        }
    }

    /// True for the one caller that should ask the server's role now (the others go on).
    func claimCheck(now: ContinuousClock.Instant = .now) -> Bool {
        state.withLock { s in
            guard !s.disabled, let interval else { return false }
            if let last = s.lastCheck, last.duration(to: now) < interval { return false }
            s.lastCheck = now
            return true
        }
    }

    /// What a role check found; true when it moved the generation on (a demotion).
    @discardableResult
    func observed(role: String) -> Bool {
        state.withLock { s in
            if role == "master" {
                s.primarySeen = true
                return false
            }
            guard s.primarySeen else { return false }
            moveOn(&s, now: .now, atMostOncePerInterval: false)
            return true
        }
    }

    /// A health probe (``RedisConnectionPool/probe()``) found a replica behind the endpoint:
    /// after a primary was seen there, the generation moves on, at most once per interval (a
    /// probe every second while the name still leads to the demoted node would otherwise
    /// reconnect the whole pool each time).
    func probeFoundReplica(now: ContinuousClock.Instant = .now) {
        state.withLock { s in
            if s.primarySeen { moveOn(&s, now: now) }
        }
    }

    /// Moves the generation on (every connection made before reconnects when next lent); with
    /// `atMostOncePerInterval`, not within the interval (1 s without one) of the last move.
    private func moveOn(_ s: inout State, now: ContinuousClock.Instant, atMostOncePerInterval: Bool = true) {
        if atMostOncePerInterval, let last = s.lastMove, last.duration(to: now) < (interval ?? .seconds(1)) { return }
        s.generation &+= 1
        s.lastMove = now
    }

    func disable() {
        state.withLock { $0.disabled = true }
    }

    /// How a connection asks its server's role: `HELLO` without a protocol version answers the
    /// connection's properties and changes nothing; least-privilege ACL users have it (ROLE
    /// needs @admin).
    static let query: [RedisArgument] = ["HELLO"]

    /// The `role` of a `HELLO` reply ("master" or "replica"), nil when it has none (an error
    /// reply, a server that does not say).
    static func role(inHELLOReply reply: RESPValue) -> String? {
        guard let fields = reply.array else { return nil }
        var i = 0
        while i + 1 < fields.count {
            if fields[i].string == "role", let role = fields[i + 1].string { return role }
            i += 2
        }
        return nil
    }
}
