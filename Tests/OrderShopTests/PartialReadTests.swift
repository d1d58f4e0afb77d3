import Foundation
import Hummingbird
import HummingbirdTesting
import LocalRedis
@testable import OrderShop
import RedisClient
import TestSupport
import Testing

/// The operations view while one node of several cannot be read (a cluster primary down, its
/// replica not yet promoted): the other nodes' streams are shown and the node is named as not
/// read, instead of the whole view failing; with no node readable it fails.
@Suite struct PartialReadTests {
    /// A pool to a loopback port where nothing listens (a socket bound, never listening, so a
    /// connect is refused at once), with that socket.
    static func refusingPool() throws -> (pool: RedisConnectionPool, socket: Int32) {
        let (fd, port) = try LocalRedisServer.bindLoopbackSocket()
        var configuration = RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: port))
        configuration.reconnect.retryWindow = .zero
        return (try RedisConnectionPool(configuration: configuration, maximumConnections: 1), fd)
    }

    @Test("one node of two refuses connections: the view shows the other's streams, names the node not read, and the charts skip the reading")
    func aNodeDownLeavesTheOthersShown() async throws {
        try await withDashboard { fixture in
            let (down, socket) = try Self.refusingPool()
            defer { close(socket) }
            let reader = OperationsReader(nodes: [fixture.pool, down], nodeNames: ["up:1", "down:2"])
            let snapshot = try await reader.read()
            let stream = try #require(snapshot.streams.first { $0.name == DashboardFixture.stream }, "\(snapshot.streams.map(\.name))")
            #expect(stream.node == "up:1" && stream.groups.first?.status.deadLetters == 1, "\(stream)")
            let unread = try #require(snapshot.unread, "every node counted as read")
            #expect(unread.map(\.node) == ["down:2"] && !unread[0].error.isEmpty, "\(unread)")

            // A partial reading is not a sample: a logical stream summed over fewer partitions
            // would chart a fall, then a spike.
            let history = RateHistory(interval: .seconds(1))
            history.record(snapshot)
            #expect(history.series().isEmpty, "\(history.series())")

            // The page's data names the node too.
            let dashboard = Dashboard(reader: reader, history: history, adminToken: nil, host: "127.0.0.1")
            try await Application(router: buildDashboardRouter(dashboard)).test(.router) { client in
                let state = try await DashboardTests.state(client)
                #expect(state.unread?.map(\.node) == ["down:2"], "\(String(describing: state.unread))")
                #expect(state.streams.contains { $0.name == DashboardFixture.stream })
            }
            // Every node read: no `unread`.
            #expect(try await OperationsReader(nodes: [fixture.pool], nodeNames: ["up:1"]).read().unread == nil)
            await down.shutdown()
        }
    }

    @Test("no node can be read: the reading fails (an empty view would say there are no streams)")
    func noNodeReadFails() async throws {
        let (first, a) = try Self.refusingPool()
        let (second, b) = try Self.refusingPool()
        defer {
            close(a)
            close(b)
        }
        await #expect(throws: (any Error).self) {
            try await OperationsReader(nodes: [first, second], nodeNames: ["a", "b"]).read()
        }
        await first.shutdown()
        await second.shutdown()
    }
}
