/// `EVALSHA sha numkeys key... arg...`: runs a cached Lua script. The keys are the script's
/// `KEYS`, so a cluster client routes the call by them (a script's keys must share one slot).
///
/// Use ``RedisClientProtocol/evaluate(_:keys:arguments:)``, which loads the script when the
/// server answers NOSCRIPT; this struct is the typed call it sends (and what a pipeline takes).
public struct EVALSHA: RedisCommand {
    public typealias Response = RESPValue
    public var script: RedisScript
    public var keys: [RedisArgument]
    public var scriptArguments: [RedisArgument]
    public init(_ script: RedisScript, keys: [RedisArgument] = [], arguments: [RedisArgument] = []) {
        self.script = script
        self.keys = keys
        self.scriptArguments = arguments
    }
    public var keysAffected: [RedisArgument] { keys }
    public var arguments: [RedisArgument] { script.evalSHAArguments(keys: keys, arguments: scriptArguments) }
}

/// `SCRIPT LOAD source`: caches the script on the node that receives it. `routingKeys` only
/// choose that node (the script's keys, so that it lands where the EVALSHA goes).
public struct SCRIPTLOAD: RedisCommand {
    public var script: RedisScript
    public var routingKeys: [RedisArgument]
    public init(_ script: RedisScript, routingKeys: [RedisArgument] = []) {
        self.script = script
        self.routingKeys = routingKeys
    }
    public var keysAffected: [RedisArgument] { routingKeys }
    public var arguments: [RedisArgument] { ["SCRIPT", "LOAD", RedisArgument(script.source)] }
    public func decode(_ reply: RESPValue) throws(RedisError) -> String {
        guard let sha = reply.string else { throw unexpected(reply, "script SHA-1") }
        return sha
    }
}
