using BusFlow.Store.Internal;

namespace BusFlow.Store.Tests;

/// <summary>
/// The hand-over from group commits to the delivery: the delivery may publish handed-over rows
/// only as a run that continues exactly where it stands, or its delivered-up-to mark could pass a
/// row it never published; anything else must send it to the store.
/// </summary>
public sealed class When_groups_hand_their_rows_to_the_delivery
{
    [Fact]
    public void Should_give_only_a_run_that_continues_where_the_delivery_stands()
    {
        using var signal = new OutboxSignal();
        signal.Committed(Rows(4, 5));
        signal.Committed(Rows(1, 3));

        // Groups that commit out of hand-over order still come out in position order.
        Assert.Equal([1L, 2, 3, 4, 5], Positions(signal.TakeCommitted(0, 100, out var lookInStore)));
        Assert.False(lookInStore);
        Assert.False(signal.HoldsCommitted);
    }

    [Fact]
    public void Should_send_the_delivery_to_the_store_for_a_hole_and_keep_what_lies_after_it()
    {
        using var signal = new OutboxSignal();
        // Positions 4 and 5 were taken by another process (or a commit whose hand-over was lost).
        signal.Committed(Rows(1, 3));
        signal.Committed(Rows(6, 7));

        Assert.Equal([1L, 2, 3], Positions(signal.TakeCommitted(0, 100, out var lookInStore)));
        Assert.True(lookInStore);
        Assert.Empty(signal.TakeCommitted(3, 100, out lookInStore));
        Assert.True(lookInStore);

        // The store gave 4-7; what is held at or below that is dropped, not published again.
        Assert.Empty(signal.TakeCommitted(7, 100, out lookInStore));
        Assert.False(lookInStore);
        Assert.False(signal.HoldsCommitted);
    }

    [Fact]
    public void Should_give_whole_groups_up_to_the_batch_size_and_the_rest_of_a_group_read_in_part()
    {
        using var signal = new OutboxSignal();
        signal.Committed(Rows(1, 3));
        signal.Committed(Rows(4, 6));
        signal.Committed(Rows(7, 9));

        Assert.Equal([1L, 2, 3, 4, 5, 6], Positions(signal.TakeCommitted(0, 7, out _)));
        // A store read that stopped inside a group leaves the group's tail to publish.
        Assert.Equal([9L], Positions(signal.TakeCommitted(8, 7, out var lookInStore)));
        Assert.False(lookInStore);
    }

    [Fact]
    public void Should_drop_everything_and_say_so_when_too_much_waits_or_this_process_does_not_deliver()
    {
        using var signal = new OutboxSignal();
        signal.Committed(Rows(1, OutboxSignal.MaxHeld - 1));
        signal.Committed(Rows(OutboxSignal.MaxHeld, OutboxSignal.MaxHeld + 1));

        Assert.Empty(signal.TakeCommitted(0, int.MaxValue, out var lookInStore));
        Assert.True(lookInStore);
        Assert.False(signal.HoldsCommitted);

        signal.Committed(Rows(1, 2));
        signal.DropCommitted();
        Assert.Empty(signal.TakeCommitted(0, 100, out lookInStore));
        Assert.True(lookInStore);
    }

    private static List<PipelineEventRecord> Rows(long from, long to) =>
        [.. Enumerable.Range(0, (int)(to - from + 1)).Select(i => new PipelineEventRecord { Position = from + i, PipelineId = Guid.Empty, Seq = from + i })];

    private static long[] Positions(List<PipelineEventRecord> rows) => [.. rows.Select(r => r.Position!.Value)];
}
