/// Key names derived from a stream. Each lives in the same Redis Cluster hash slot as its
/// stream, so that one script may touch both.
public enum StreamKeys {
    /// The stream name with a hash tag that names its slot: the stream itself when it already
    /// has a tag (`events:{customer}_created`), else `{stream}`.
    public static func slotTagged(_ stream: String) -> String {
        if let open = stream.firstIndex(of: "{"),
            let close = stream[stream.index(after: open)...].firstIndex(of: "}"),
            close > stream.index(after: open)
        {
            return stream
        }
        return "{\(stream)}"
    }

    /// The dead letters of a group: `dlq:<stream>:<group>`.
    public static func deadLetter(stream: String, group: String) -> String {
        "dlq:\(slotTagged(stream)):\(group)"
    }

    /// The replay stream of a group: `replay:<stream>:<group>`. `dlq replay` re-adds a group's
    /// dead letters here, and only that group's workers read it, so no other group sees them
    /// again. Same slot as the stream.
    public static func replay(stream: String, group: String) -> String {
        "replay:\(slotTagged(stream)):\(group)"
    }

    /// A bucket of a group's idempotency markers: `idem:<stream>:<group>:<bucket>`, a hash whose
    /// fields are the event ids settled during one bucket period (see ``IdempotencyMarkers``).
    public static func markerBucket(stream: String, group: String, bucket: Int64) -> String {
        "idem:\(slotTagged(stream)):\(group):\(bucket)"
    }
}
