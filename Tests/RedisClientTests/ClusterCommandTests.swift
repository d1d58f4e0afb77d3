import Foundation
import LocalRedis
import RedisClient
import TestSupport
import Testing

/// `ordershop ping` and `ordershop status` against a Redis Cluster, run as an operator runs them.
@Suite(.serialized) struct ClusterCommandTests {
    @Test func pingAndStatusShowEveryNode() async throws {
        let ordershop = try builtProduct("ordershop")
        try await withLocalCluster { cluster, client in
            try await client.connect()
            // A stream with a group on every primary.
            var streams: [String: ClusterNodeAddress] = [:]
            var n = 0
            while Set(streams.values).count < 3 {
                let stream = "events:{p\(n)}"
                n += 1
                let owner = client.primary(for: HashSlot(key: stream))!
                guard !streams.values.contains(owner) else { continue }
                streams[stream] = owner
                try await client.send(XADD(RedisArgument(stream), fields: [StreamField("f", "v")]))
                try await client.send(XGROUPCREATE(RedisArgument(stream), group: "crm", id: "0"))
            }
            let environment = ["REDIS_URL": "redis://127.0.0.1:1", "REDIS_TLS_CA_FILE": "", "REDIS_TLS_SERVER_NAME": ""]

            let ping = try await runChild(ordershop, ["ping", "--url", cluster.url], environment: environment)
            #expect(ping.status == 0, "\(ping.output)")
            for address in cluster.addresses { #expect(ping.output.contains(address), "\(address) missing: \(ping.output)") }
            let lines = ping.output.split(separator: "\n")
            #expect(lines.filter { $0.contains(" primary ") && $0.contains("rtt") }.count == 3, "\(ping.output)")
            #expect(lines.filter { $0.contains(" replica ") && $0.contains("rtt") }.count == 3, "\(ping.output)")
            #expect(ping.output.contains("slots 0-5460 (5461)"), "\(ping.output)")
            #expect(ping.output.contains("3 shards"))

            // Detected from INFO cluster, with no cluster=yes in the URL.
            let status = try await runChild(
                ordershop, ["status", "--url", "redis://" + cluster.addresses[0], "--json"], environment: environment)
            #expect(status.status == 0, "\(status.output)")
            for stream in streams.keys { #expect(status.output.contains("\"\(stream)\""), "\(stream) missing: \(status.output)") }
            #expect(!status.output.contains("note:"), "\(status.output)")
            // One node read alone, as asked: its own streams, and a note that it is a cluster's
            // node (a trial found a third of the streams shown without a word).
            let alone = try await runChild(ordershop, ["status", "--url", "redis://" + cluster.addresses[0] + "?cluster=no"], environment: environment)
            #expect(alone.status == 0, "\(alone.output)")
            #expect(alone.output.contains("note: \(cluster.addresses[0]) is a node of a Redis Cluster read alone (cluster=no)"), "\(alone.output)")
            // A stream of another node's slots, asked of this node alone: the redirect says what
            // to do (a review found dlq list printing Redis's bare "MOVED 1234 h:p").
            let elsewhere = try #require(streams.first { "\($0.value)" != cluster.addresses[0] }?.key)
            let dlq = try await runChild(
                ordershop, ["dlq", "list", elsewhere, "crm", "--url", "redis://" + cluster.addresses[0] + "?cluster=no"], environment: environment)
            #expect(dlq.status != 0, "\(dlq.output)")
            #expect(dlq.output.contains("MOVED") && dlq.output.contains("leave cluster=no out of the URL"), "\(dlq.output)")
        }
    }
}
