extension RedisArgument {
    /// A duration as whole milliseconds (rounded up), as PX, BLOCK, IDLE and min-idle take it.
    public init(milliseconds duration: Duration) {
        self.init(duration.milliseconds)
    }
}
