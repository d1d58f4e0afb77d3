/// `WAIT numreplicas timeout`: blocks until every write this connection made so far is
/// acknowledged by `replicas` replicas, or `timeout` passes; answers how many acknowledged.
///
/// It speaks of the connection it is sent on: send it on the connection that made the writes
/// (``RedisClientProtocol/evaluate(_:keys:arguments:confirming:barrier:wrote:)`` does). A timeout of zero
/// would make the server wait forever, so it is refused.
public struct WAIT: RedisCommand {
    public var replicas: Int
    public var timeout: Duration
    public init(replicas: Int, timeout: Duration) {
        precondition(replicas > 0, "WAIT for at least one replica")
        precondition(timeout > .zero, "WAIT 0 blocks forever")
        self.replicas = replicas
        self.timeout = timeout
    }
    public var blockingTimeout: Duration? { timeout }
    public var arguments: [RedisArgument] { ["WAIT", RedisArgument(replicas), RedisArgument(milliseconds: timeout)] }
    public func decode(_ reply: RESPValue) throws(RedisError) -> Int {
        guard let n = reply.int else { throw unexpected(reply, "integer") }
        return n
    }
}
