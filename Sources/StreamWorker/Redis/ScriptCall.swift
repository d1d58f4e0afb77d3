import RedisClient

/// One call of a worker script, typed: the call encodes its keys and arguments, and decodes the
/// script's reply into its own ``Reply`` (enums, not magic integers).
protocol ScriptCall: Sendable {
    associatedtype Reply: Sendable
    var script: RedisScript { get }
    var keys: [RedisArgument] { get }
    var arguments: [RedisArgument] { get }
    func decode(_ reply: RESPValue) throws -> Reply
}

extension ScriptCall {
    /// The typed EVALSHA: a cluster client routes it by the call's keys.
    var evalSHA: EVALSHA { EVALSHA(script, keys: keys, arguments: arguments) }

    /// An error for a reply of the wrong shape.
    func unexpected(_ reply: RESPValue) -> RedisError {
        RedisError(.unexpectedReply, "\(Self.self): unexpected reply \(reply)")
    }
}

extension RedisClientProtocol {
    /// Runs one script call (loading the script first if the server answers NOSCRIPT).
    func run<Call: ScriptCall>(_ call: Call) async throws -> Call.Reply {
        try call.decode(try await evaluate(call.script, keys: call.keys, arguments: call.arguments))
    }
}

/// Script calls and plain commands sent in one round trip. On a Redis Cluster every command of
/// one pipeline must touch one slot (a subscription's keys share its stream's slot, see
/// ``StreamKeys``): the pipeline then goes to one node in one round trip.
///
/// A restarted server lost its script cache: a NOSCRIPT reply means that call did not run. The
/// pipeline sends those calls again, one by one with the script loaded where they go, and only
/// those: the others ran, and their replies say what they did (re-sending them would count
/// their stats twice).
struct ScriptPipeline {
    private(set) var commands: [any RedisCommand] = []

    var isEmpty: Bool { commands.isEmpty }

    /// Adds a script call; returns the index of its reply.
    mutating func add(_ call: some ScriptCall) -> Int {
        commands.append(call.evalSHA)
        return commands.count - 1
    }

    /// Adds a plain command; returns the index of its reply.
    mutating func add(command: some RedisCommand) -> Int {
        commands.append(command)
        return commands.count - 1
    }

    /// Sends everything; throws the first error (after the NOSCRIPT retry).
    func send(on client: any RedisClientProtocol) async throws -> [RESPValue] {
        guard !commands.isEmpty else { return [] }
        let results = await client.execute(commands)
        var replies: [RESPValue] = []
        replies.reserveCapacity(results.count)
        for (index, result) in results.enumerated() {
            switch result {
            case .success(let reply):
                replies.append(reply)
            case .failure(let error) where error.code == .noScript:
                guard let call = commands[index] as? EVALSHA else { throw error }
                // evaluate loads the script on the node the call goes to, then calls it again.
                replies.append(try await client.evaluate(call.script, keys: call.keys, arguments: call.scriptArguments))
            case .failure(let error):
                throw error
            }
        }
        return replies
    }
}
