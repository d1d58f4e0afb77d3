import FaultProxy
import LocalRedis

/// The cluster topology's network: a proxy in front of every node's client port and cluster
/// bus port, which the node announces (`cluster-announce-port`, `cluster-announce-bus-port`),
/// so that clients, replicas and the other nodes all reach it through them; and a loopback
/// address of its own for the node's outgoing connections (`bind-source-addr` 127.0.0.(20+i)),
/// so that a proxy can tell a node's connections from the clients' (127.0.0.1) and from the
/// other nodes'. With it, ``isolate(_:)`` cuts one node off from the rest of the cluster.
public final class ClusterNetwork: Sendable {
    public struct Node: Sendable {
        public let client: TCPProxy
        public let bus: TCPProxy
        public let sourceAddress: String
    }

    public let nodes: [Node]

    /// Proxies for `count` nodes, forwarding nowhere until ``forward(_:port:busPort:)``.
    public init(count: Int) throws {
        nodes = try (0..<count).map { i in
            Node(client: try TCPProxy(targetPort: 0), bus: try TCPProxy(targetPort: 0), sourceAddress: "127.0.0.\(20 + i)")
        }
        // The network faults (`reset`, `stall`, `latency`) act on the clients' connections only,
        // not on a replica's link to its primary (which also passes the primary's client proxy).
        for node in nodes { node.client.limitFaults(to: .addresses([Self.clientAddress])) }
    }

    /// Where the services, workers, tools and the harness connect from.
    public static let clientAddress = "127.0.0.1"

    /// The routes the cluster's nodes announce, by index.
    public var routes: [LocalRedisCluster.NodeRoute] {
        nodes.map { .init(port: $0.client.port, busPort: $0.bus.port, sourceAddress: $0.sourceAddress) }
    }

    /// Node `index` listens on these ports (``LocalRedisCluster/Options/nodeStarted``).
    public func forward(_ index: Int, port: Int, busPort: Int) {
        nodes[index].client.retarget(toPort: port)
        nodes[index].bus.retarget(toPort: busPort)
    }

    /// A network partition between node `index` and every other node, both ways: its bus port
    /// takes nobody's connections (only nodes connect there); its client port takes the clients'
    /// (127.0.0.1: the services, workers and tools stay on its side) but no other node's (a
    /// replica's link); the other nodes' ports take nothing from it. Connections are held, not
    /// reset, as a real partition holds them.
    public func isolate(_ index: Int) {
        let others = Set(nodes.indices.filter { $0 != index }.map { nodes[$0].sourceAddress })
        nodes[index].bus.partition(from: .all)
        nodes[index].client.partition(from: .addresses(others))
        for i in nodes.indices where i != index {
            nodes[i].bus.partition(from: .addresses([nodes[index].sourceAddress]))
            nodes[i].client.partition(from: .addresses([nodes[index].sourceAddress]))
        }
    }

    /// The other nodes' connections to node `index`'s client port that a partition holds now:
    /// its replica's replication link, when it is a primary.
    public func replicaLinksCutOff(at index: Int) -> Int { nodes[index].client.partitionedConnections }

    /// The node-to-node connections a partition holds now (a partition with none cut nothing).
    public var connectionsCutOff: Int {
        nodes.reduce(0) { $0 + $1.bus.partitionedConnections + $1.client.partitionedConnections }
    }

    /// Ends the partition: held connections go on.
    public func heal() {
        for node in nodes {
            node.bus.endPartition()
            node.client.endPartition()
        }
    }

    public func stop() {
        for node in nodes {
            node.bus.stop()
            node.client.stop()
        }
    }
}
