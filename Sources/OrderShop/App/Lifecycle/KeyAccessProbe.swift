import RedisClient

/// What a service writes, tried once at start with its Redis user, changing nothing: a service
/// whose ACL user may not write its keys cannot do its job, and says so in one line and exits.
///
/// Why: trial J ran `serve customer` as the CRM worker's user (allowed to read read models and
/// to run scripts over them, not to write them): it answered every create 503 naming the ACL
/// while its `/healthz` said ok, so a readiness probe kept it serving.
///
/// Per slot the service writes, one script tries a write command on a read-model key (`HDEL` of
/// a field no entity has; msg: `PEXPIRE` of a marker that does not exist) and on the stream it
/// appends to (`XADD` with id 0-0, which Redis refuses after its ACL check). Neither changes
/// anything, so nothing reaches the replicas or the append-only file. Only an ACL refusal counts:
/// any other error (a replica, a lost connection) is left to the service's own handling.
public enum KeyAccessProbe {
    /// One slot's keys: a key and the write command tried on it, and a stream.
    struct Target: Sendable {
        var key: String
        var command: [String]
        var stream: String
    }

    /// Each partition of a type is a slot of its own (``ShopLayout``): each is tried.
    static func targets(of service: ServiceName, layout: ShopLayout = .single) -> [Target] {
        func entity(_ type: EntityType, appending action: EventAction = .created) -> [Target] {
            layout.partitions(type).map {
                Target(key: $0.keys.entities, command: ["HDEL", "\u{0}ordershop-access-probe"], stream: $0.stream(action))
            }
        }
        switch service {
        case .gateway: return []
        case .customer: return entity(.customer)
        case .product: return entity(.product)
        case .inventory: return entity(.inventory)
        // An order change writes each stock partition's slot too (its reservation's parts,
        // ``OrderSteps``), and appends there to the stock's updated stream only.
        case .order: return entity(.order) + entity(.inventory, appending: .updated)
        case .billing: return entity(.billing)
        // Not a marker's name (`{mail:sent}:key:<key>`): a client's Idempotency-Key
        // "ordershop-access-probe" made that one a real marker, which the probe's PEXPIRE ended (a review).
        case .msg: return [Target(key: "{\(MailKeys.sent)}:access-probe", command: ["PEXPIRE", "1"], stream: MailKeys.sent)]
        }
    }

    /// KEYS: a key, a stream. ARGV: the command to try on the key, then its arguments after the
    /// key. Answers each try's error reply, or "" (the XADD's is always an error: id 0-0).
    static let script = RedisScript(
        """
        local function failure(reply)
          if type(reply) == 'table' and reply.err then return reply.err end
          return ''
        end
        return {failure(redis.pcall(ARGV[1], KEYS[1], unpack(ARGV, 2))), failure(redis.pcall('XADD', KEYS[2], '0-0', 'probe', '1'))}
        """)

    /// Throws ``RedisUnusable`` naming the user, the key and the role that may write it when
    /// Redis's ACL refuses `service` a write it needs; for the gateway, which writes nothing,
    /// when it refuses a read of a type's read model (``checkReads(client:at:)``).
    public static func check(
        _ service: ServiceName, client: any RedisClientProtocol, at configuration: RedisConfiguration, layout: ShopLayout = .single
    ) async throws {
        if service == .gateway { try await checkReads(client: client, at: configuration, layout: layout) }
        for target in targets(of: service, layout: layout) {
            let refusal: (key: String, reason: String)?
            do {
                let reply = try await client.evaluate(
                    script, keys: [RedisArgument(target.key), RedisArgument(target.stream)], arguments: target.command.map { RedisArgument($0) })
                // Redis's words for an ACL refusal, as the services tell them from other errors.
                let failures = zip([target.key, target.stream], (reply.array ?? []).map { $0.string ?? "" })
                refusal = failures.first { RedisError.isACLRefusal($0.1) }.map { (key: $0.0, reason: $0.1) }
            } catch let error as RedisError where error.code == .noPermission {
                // The script itself: its keys are not the user's to name in EVAL.
                refusal = ("\(target.key) and \(target.stream)", error.message)
            } catch {
                continue
            }
            guard let refusal else { continue }
            throw RedisUnusable.aclRefusal(
                at: configuration,
                "write \(refusal.key), which the \(service) service writes (\(ShopError.withoutScriptLocation(refusal.reason))); run it as a user with the \(service == .msg ? "msg role (ordershop-msg" : "service role (ordershop-service") in deploy/redis/users.acl)"
            )
        }
    }

    /// The gateway's queries, tried once per entity type (the script a query of one entity
    /// runs, for an id no entity has). Why: a gateway run as the scaler's user started, said ok
    /// on `/healthz`, and answered every query 503 naming the ACL (a trial), where the owning
    /// services refuse to start with a user that cannot do their job.
    static func checkReads(client: any RedisClientProtocol, at configuration: RedisConfiguration, layout: ShopLayout) async throws {
        for key in EntityType.allCases.flatMap({ layout.partitions($0).map(\.keys.entities) }) {
            let reason: String
            do {
                _ = try await client.evaluate(Scripts.one, keys: [RedisArgument(key)], arguments: [RedisArgument("\u{0}ordershop-access-probe")])
                continue
            } catch let error as RedisError where error.isACLRefusal {
                reason = error.message
            } catch {
                continue
            }
            throw RedisUnusable.aclRefusal(
                at: configuration,
                "read \(key), which the gateway's queries read (\(ShopError.withoutScriptLocation(reason))); run it as a user with the gateway role (ordershop-gateway in deploy/redis/users.acl)"
            )
        }
    }
}
