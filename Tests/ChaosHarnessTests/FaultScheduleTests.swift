import OrderShop
import RedisClient
import Testing

@testable import ChaosHarness

@Suite("Which faults a topology gets, and the schedule a seed draws")
struct FaultScheduleTests {
    @Test("a cluster gets its own failovers and resharding and the proxy faults (on every node's proxy), never a lone server's restart or a pair's failover")
    func clusterKinds() {
        let kinds = Set(FaultKind.allCases.filter { $0.applies(to: .cluster) })
        #expect(kinds.isSuperset(of: FaultKind.cluster + FaultKind.proxy))
        #expect(kinds.isDisjoint(with: FaultKind.replication + [.redis]))
        #expect(kinds.isSuperset(of: [.kill, .pause, .term, .orderCrash, .orderPause, .malformed, .duplicate] + FaultKind.operations))
        // The other topologies never get a cluster fault.
        for topology in [RedisTopology.single, .replicated] {
            #expect(FaultKind.cluster.allSatisfy { !$0.applies(to: topology) }, "\(topology)")
        }
    }

    @Test("a cluster schedule has every enabled kind, each cluster fault with a target, and is the seed's alone (also in 6 partitions)", arguments: [1, 6])
    func clusterSchedule(partitions: Int) {
        var options = ChaosOptions()
        options.partitions = partitions
        options.topology = .cluster
        options.faults = Set(FaultKind.allCases.filter { $0.applies(to: .cluster) })
        options.duration = 90
        options.seed = 20_261_129
        let schedule = FaultSchedule.make(options: options)
        #expect(Set(schedule.map(\.kind)) == options.faults)
        for fault in schedule where FaultKind.cluster.contains(fault.kind) {
            #expect(fault.stream.map { Topology.clusterTargets(in: options.layout).contains($0) } == true, "\(fault)")
        }
        // Each shard is a target (the shards in turn: a uniform draw over the six keys never hit the first shard here).
        let targets = Set(schedule.compactMap { FaultKind.cluster.contains($0.kind) ? $0.stream : nil })
        for shard in Topology.clusterTargetsByShard(in: options.layout) { #expect(!targets.isDisjoint(with: shard), "\(shard) never a target: \(targets)") }
        // A primary stays down long enough to be failed over, and comes back.
        for fault in schedule where fault.kind == .primaryKill || fault.kind == .primaryPause { #expect(fault.seconds >= 0.5 && fault.seconds <= 3) }
        #expect(FaultSchedule.make(options: options) == schedule)
        options.seed += 1
        #expect(FaultSchedule.make(options: options) != schedule)
    }

    @Test("in a cluster the services and the workers confirm with a replica; the planted unconfirmed-writes takes it from the services only")
    func clusterConfirms() {
        var options = ChaosOptions()
        options.topology = .cluster
        let confirm = ["--confirm-replicas", "1", "--confirm-timeout", "2000"]
        #expect(Topology.confirmationArguments(options, service: true) == confirm)
        #expect(Topology.confirmationArguments(options, service: false) == confirm)
        options.plantedBug = .unconfirmedWrites
        #expect(Topology.confirmationArguments(options, service: true).isEmpty)
        #expect(Topology.confirmationArguments(options, service: false) == confirm)
        options.topology = .single
        options.plantedBug = nil
        #expect(Topology.confirmationArguments(options, service: true).isEmpty)
    }

    @Test("the cluster faults target every entity type's slot (each partition's, in partitions) and msg's")
    func clusterTargets() {
        #expect(Set(Topology.clusterTargets(in: .single)) == Set(EntityType.allCases.map(\.tag) + ["{mail:sent}"]))
        // Grouped by the shard of a new 3-primary cluster: every shard has one.
        let shards = Topology.clusterTargetsByShard(in: .single)
        #expect(shards.count == 3 && Set(shards.flatMap { $0 }) == Set(Topology.clusterTargets(in: .single)), "\(shards)")
        // In 6 partitions: each partition's slot once (every type's partition p is in it), and msg's.
        let layout = ShopLayout(partitions: 6)
        let spread = Topology.clusterTargets(in: layout)
        #expect(spread.count == 6 + 1 && Set(spread.map { HashSlot(key: $0) }).count == 7)
        for type in EntityType.allCases {
            #expect(Set(layout.partitions(type).map { HashSlot(key: $0.keys.entities) }).isSubset(of: Set(spread.map { HashSlot(key: $0) })))
        }
        // Two partitions in each third of the slots: each shard of a new cluster serves two.
        #expect(Topology.clusterTargetsByShard(in: layout).allSatisfy { $0.count >= 2 })
        // Keys of msg's slot: its stream and its markers share one.
        #expect(HashSlot(key: "{mail:sent}") == HashSlot(key: MailKeys.sent))
        #expect(HashSlot(key: "{mail:sent}") == HashSlot(key: MailKeys.marker("crm:e1")))
    }
}
