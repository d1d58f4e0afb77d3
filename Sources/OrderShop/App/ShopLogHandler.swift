import Logging

/// swift-log's `StreamLogHandler` lines, byte for byte, with the logger's own metadata kept as
/// given and formatted only when a line is written.
///
/// Why: `StreamLogHandler` formats all of a logger's metadata (sorted, joined) each time one
/// item is set. Hummingbird sets `hb.request.id` on every request's logger, and the in-process
/// calls between the shop's services do too, so every request paid for that formatting at least
/// twice, though almost no request logs a line: 2.6 % of the samples of `ordershop up`'s
/// cooperative threads under `POST /customers` load. Lines also get the metadata provider's
/// items (the trace and span id), so the stored formatting was not used for them anyway.
public struct ShopLogHandler: LogHandler {
    /// Writes the lines; it has no metadata and no provider of its own.
    private var output: StreamLogHandler
    public var metadata = Logger.Metadata()
    public var metadataProvider: Logger.MetadataProvider?

    public var logLevel: Logger.Level {
        get { output.logLevel }
        set { output.logLevel = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// To standard error, as `StreamLogHandler.standardError`.
    public init(label: String, metadataProvider: Logger.MetadataProvider?) {
        self.output = StreamLogHandler.standardError(label: label, metadataProvider: nil)
        self.metadataProvider = metadataProvider
    }

    /// To `stream`.
    public init(label: String, stream: any TextOutputStream & Sendable, metadataProvider: Logger.MetadataProvider?) {
        self.output = StreamLogHandler(label: label, stream: stream, metadataProvider: nil)
        self.metadataProvider = metadataProvider
    }

    public func log(event: LogEvent) {
        // StreamLogHandler's precedence: the logger's metadata, then the provider's, then the
        // line's own.
        var event = event
        var merged = metadata
        if let provided = metadataProvider?.get(), !provided.isEmpty {
            merged.merge(provided) { _, provided in provided }
        }
        if let explicit = event.metadata, !explicit.isEmpty {
            merged.merge(explicit) { _, explicit in explicit }
        }
        event.metadata = merged
        output.log(event: event)
    }
}
