namespace BusFlow;

/// <summary>
/// The bus message id of a pipeline event: the same whenever and however often it is published,
/// alone or split from a <see cref="Contracts.PipelineEventBatch"/>, so a subscriber may de-duplicate by it.
/// </summary>
public static class PipelineEventMessageIds
{
    /// <summary>The pipeline id with the event's seq folded into its last 8 bytes.</summary>
    public static Guid For(Guid pipelineId, long seq)
    {
        Span<byte> bytes = stackalloc byte[16];
        pipelineId.TryWriteBytes(bytes);
        Span<byte> seqBytes = stackalloc byte[8];
        BitConverter.TryWriteBytes(seqBytes, seq);
        for (var i = 0; i < 8; i++)
        {
            bytes[8 + i] ^= seqBytes[i];
        }

        return new Guid(bytes);
    }
}
