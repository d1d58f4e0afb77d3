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
    var evalSHA: [RedisArgument] { script.evalSHAArguments(keys: keys, arguments: arguments) }

    /// An error for a reply of the wrong shape.
    func unexpected(_ reply: RESPValue) -> RedisError {
        RedisError(.unexpectedReply, "\(Self.self): unexpected reply \(reply)")
    }
}

extension RedisConnectionPool {
    /// Runs one script call (loading the script first if the server answers NOSCRIPT).
    func run<Call: ScriptCall>(_ call: Call) async throws -> Call.Reply {
        try call.decode(try await evaluate(call.script, keys: call.keys, arguments: call.arguments))
    }
}

/// Script calls and plain commands sent in one round trip.
///
/// A restarted server lost its script cache: a NOSCRIPT reply means that call did not run. The
/// pipeline loads the scripts and sends those calls again, only those: the others ran, and their
/// replies say what they did (re-sending them would count their stats twice).
struct ScriptPipeline {
    private(set) var commands: [[RedisArgument]] = []
    private var scripts: [RedisScript] = []

    var isEmpty: Bool { commands.isEmpty }

    /// Adds a script call; returns the index of its reply.
    mutating func add(_ call: some ScriptCall) -> Int {
        if !scripts.contains(call.script) { scripts.append(call.script) }
        commands.append(call.evalSHA)
        return commands.count - 1
    }

    /// Adds a plain command; returns the index of its reply.
    mutating func add(command: [RedisArgument]) -> Int {
        commands.append(command)
        return commands.count - 1
    }

    /// Sends everything; throws the first error reply (after the NOSCRIPT retry).
    func send(on pool: RedisConnectionPool) async throws -> [RESPValue] {
        guard !commands.isEmpty else { return [] }
        var replies = try await pool.pipeline(commands)
        let notRun = replies.indices.filter { index in
            if case .error(let message) = replies[index] { return message.hasPrefix("NOSCRIPT") }
            return false
        }
        if !notRun.isEmpty {
            for script in scripts { try await pool.send(["SCRIPT", "LOAD", RedisArgument(script.source)]) }
            let again = try await pool.pipeline(notRun.map { commands[$0] })
            for (k, index) in notRun.enumerated() { replies[index] = again[k] }
        }
        for reply in replies { try reply.throwingServerError() }
        return replies
    }
}
