import Logging
import RedisClient

/// What every OrderShop service shares: the Redis pool, the event store and the read models.
public struct ShopContext: Sendable {
    public let pool: any RedisClientProtocol
    public let store: EventStore
    public let readModel: ReadModel
    /// `/healthz`; with `checksLayout`, 503 until ``HealthCheck/layout`` is opened by the
    /// process's layout check.
    public let health: HealthCheck
    public let logger: Logger
    /// `--confirm-replicas`: commands (and mails) answer 2xx, and queries answer, only once
    /// replicas have what they answer on.
    public let confirmation: ReplicaConfirmation?

    public init(
        pool: any RedisClientProtocol, logger: Logger, confirmation: ReplicaConfirmation? = nil, orderStepPause: Duration = .zero,
        orderPlantedBug: OrderChangePlantedBug? = nil, layout: ShopLayout = .single, misplacesCreations: Bool = false, checksLayout: Bool = false
    ) throws(RedisError) {
        self.pool = pool
        self.confirmation = confirmation
        var store = EventStore(pool: pool, confirmation: confirmation, orderStepPause: orderStepPause, layout: layout)
        store.orderPlantedBug = orderPlantedBug
        store.misplacesCreations = misplacesCreations
        self.store = store
        self.readModel = ReadModel(pool: pool, confirmation: confirmation, layout: layout)
        self.health = HealthCheck(pool: pool, layout: StartGate(waitingFor: checksLayout ? 1 : 0))
        self.logger = logger
    }
}

/// The Redis client of a service: a ``RedisClusterClient`` when the configuration says it is a
/// Redis Cluster (`?cluster=yes`, or further seeds, `?addr=`, with `auto`), else a pool for one
/// server. Made without Redis answering (the service starts and answers 503 until it does), so
/// `auto` is not probed here: without seeds it is one server. Seeds name a cluster: a pool used
/// the URL's host alone, so a service of a cluster given seeds but no `cluster=yes` met MOVED,
/// and one given a standalone server with seeds ignored them without a word (a trial); the
/// cluster client refuses a standalone server in one line ("cluster support disabled").
/// A cluster client's ``RedisClientProtocol/run()`` must run while it is used.
public func makeRedisClient(_ configuration: RedisConfiguration, maximumConnections: Int, logger: Logger) throws -> any RedisClientProtocol {
    guard configuration.clusterMode == .enabled || (configuration.clusterMode == .auto && !configuration.seeds.isEmpty) else {
        return try RedisConnectionPool(configuration: configuration, maximumConnections: maximumConnections, logger: logger)
    }
    var cluster = try RedisClusterConfiguration(configuration)
    cluster.connectionsPerNode = maximumConnections
    return try RedisClusterClient(configuration: cluster, logger: logger)
}
