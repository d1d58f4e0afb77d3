import ArgumentParser

@main
struct OrderShopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ordershop",
        abstract: "OrderShop on Redis Streams: services, workers and operations.",
        subcommands: [
            PingCommand.self,
            StatusCommand.self, DeadLetterCommand.self, TrimCommand.self, WorkerProbeCommand.self,
            BenchCommand.self,
        ]
    )
}
