import Logging
import RedisClient

/// What every OrderShop service shares: the Redis pool, the event store and the read models.
public struct ShopContext: Sendable {
    public let pool: any RedisClientProtocol
    public let store: EventStore
    public let readModel: ReadModel
    public let health: HealthCheck
    public let logger: Logger

    public init(pool: any RedisClientProtocol, logger: Logger) throws(RedisError) {
        self.pool = pool
        self.store = EventStore(pool: pool)
        self.readModel = ReadModel(pool: pool)
        self.health = HealthCheck(pool: pool)
        self.logger = logger
    }
}
