import ArgumentParser
import WorkerMetricsHTTP

@main
struct OrderShopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ordershop",
        abstract: "OrderShop on Redis Streams: services, workers and operations.",
        subcommands: [
            PingCommand.self,
            ServeCommand.self, WorkCommand.self, UpCommand.self, DemoCommand.self, RebuildCommand.self, SnapshotCommand.self,
            StatusCommand.self, DashboardCommand.self, DeadLetterCommand.self, TrimCommand.self, WorkerProbeCommand.self, OTLPSinkCommand.self,
            BenchCommand.self,
        ]
    )

    /// ArgumentParser's own `main`, after the descriptor limit is raised (``DescriptorLimit``):
    /// before any server sizes its connection ceiling from it or opens a descriptor.
    static func main() async {
        DescriptorLimit.raiseSoftLimitToHard()
        await main(nil)
    }
}
