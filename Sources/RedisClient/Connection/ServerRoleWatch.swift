import Synchronization

/// Follows a failover behind one endpoint for every connection made from one pool (its pooled
/// and dedicated connections): a generation that moves on when the server turned out to be a
/// replica, after which each connection made before reconnects before its next command (through
/// the host name, which a managed service moves to the new primary).
///
/// Two things move it: a `READONLY` reply on any of the connections, and a role check
/// (``RedisConfiguration/roleCheckInterval``) that finds a replica behind an endpoint that has
/// led to a primary before: at each check until the name leads to a primary again (connections
/// made while it still led to the demoted node are moved on at the next check). A server that
/// was a replica from the start (a URL naming one) does not move it: its connections would only
/// reconnect to it again.
final class ServerRoleWatch: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var lastCheck: ContinuousClock.Instant?
        /// A check or a command found the primary behind the endpoint at some time.
        var primarySeen = false
        /// The server refused `HELLO` (before Redis 6, or an ACL without it): not asked again.
        var disabled = false
    }
    private let state = Mutex(State())

    /// nil: no periodic check (a `READONLY` still moves the generation on).
    let interval: Duration?

    init(interval: Duration?) {
        self.interval = interval
    }

    /// False once the server refused `HELLO`.
    var isEnabled: Bool { state.withLock { !$0.disabled } }

    /// A connection was made to a server of this role: a primary there is what a later check
    /// compares with. It moves nothing itself: while the name still leads to a demoted node,
    /// every reconnect would move every other connection again.
    func connected(role: String) {
        if role == "master" { state.withLock { $0.primarySeen = true } }
    }

    var generation: UInt64 { state.withLock { $0.generation } }

    /// The server of a connection refused a write as a replica (READONLY).
    func demoted() {
        state.withLock { $0.generation &+= 1 }
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
            s.generation &+= 1
            return true
        }
    }

    func disable() {
        state.withLock { $0.disabled = true }
    }
}
