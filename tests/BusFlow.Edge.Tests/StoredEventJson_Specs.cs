using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using BusFlow.Contracts;
using BusFlow.Edge.Live;

namespace BusFlow.Edge.Tests;

/// <summary>
/// Replay splices the row's position into the stored JSON without reading the document: the
/// top-level <c>position</c> must be the one replaced even when user data carries its own.
/// </summary>
public sealed class When_a_stored_event_gets_its_position
{
    private static readonly Guid PipelineId = Guid.Parse("0b5e7a52-7f57-4f4e-9a43-6d1d6d9e8b21");
    private static readonly DateTimeOffset At = new(2026, 11, 23, 22, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Should_be_the_live_bytes_when_the_user_data_holds_position_properties_too()
    {
        var progress = new StepProgress
        {
            PipelineId = PipelineId,
            Seq = 7,
            Timestamp = At,
            Definition = "demo",
            StepName = "step",
            StepIndex = 0,
            Attempt = 1,
            Message = ""","position":3,"x":{"position":4}""",
            Chunk = JsonDocument.Parse("""{"a":0,"position":5,"nested":{"b":0,"position":6},"list":[{"c":0,"position":7}]}""").RootElement,
            Tags = new Dictionary<string, string> { ["a"] = "1", ["position"] = "8" },
        };
        var started = new PipelineStarted
        {
            PipelineId = PipelineId,
            Seq = 1,
            Timestamp = At,
            Definition = "demo",
            Input = JsonDocument.Parse("""{"a":0,"position":9,"escaped":"\"position\":10"}""").RootElement,
        };

        foreach (var e in new PipelineEvent[] { progress, started })
        {
            var spliced = Spliced(Stored(e.EventType, PipelineEventJson.SerializeToUtf8Bytes(e), 1_234_567));

            Assert.Equal(Encoding.UTF8.GetString(PipelineEventJson.SerializeToUtf8Bytes(e with { Position = 1_234_567 })), Encoding.UTF8.GetString(spliced));
        }
    }

    [Fact]
    public void Should_open_with_the_envelope_so_the_position_is_found_first()
    {
        var json = Encoding.UTF8.GetString(PipelineEventJson.SerializeToUtf8Bytes(new PipelineCompleted { PipelineId = PipelineId, Seq = 2, Timestamp = At, Definition = "demo" }));

        Assert.StartsWith("""{"type":"PipelineCompleted","pipelineId":"0b5e7a52-7f57-4f4e-9a43-6d1d6d9e8b21","seq":2,"position":0,""", json, StringComparison.Ordinal);
    }

    [Fact]
    public void Should_find_the_position_in_the_layout_of_earlier_versions_past_user_data()
    {
        // Stored before the envelope came first: the event's own properties, user data with positions of its own, then the envelope.
        const string Json = """{"type":"StepFailed","error":{"kind":"X","message":"\"position\":3"},"retryAt":null,"stepName":"s","output":{"position":4,"list":[{"position":5}]},"pipelineId":"0b5e7a52-7f57-4f4e-9a43-6d1d6d9e8b21","seq":13,"position":0,"timestamp":"2026-11-23T09:24:25.5511336+00:00","definition":"demo","tags":{"position":"6"},"parentPipelineId":null}""";

        var spliced = Spliced(Stored("StepFailed", Encoding.UTF8.GetBytes(Json), 77));

        Assert.Equal(Json.Replace("\"position\":0,", "\"position\":77,", StringComparison.Ordinal), Encoding.UTF8.GetString(spliced));
    }

    [Fact]
    public void Should_not_take_the_leading_layout_from_a_row_of_another_type()
    {
        // The column says PipelineCompleted, the JSON opens as a StepProgress: the prefix is not trusted, the search decides.
        const string Json = """{"type":"StepProgress","pipelineId":"0b5e7a52-7f57-4f4e-9a43-6d1d6d9e8b21","seq":2,"position":0,"timestamp":"2026-11-23T22:00:00+00:00","definition":"demo"}""";

        var spliced = Spliced(Stored("PipelineCompleted", Encoding.UTF8.GetBytes(Json), 5));

        Assert.Equal(Json.Replace("\"position\":0,", "\"position\":5,", StringComparison.Ordinal), Encoding.UTF8.GetString(spliced));
    }

    [Fact]
    public void Should_leave_an_object_after_the_top_level_position_untouched()
    {
        // A later version may write a property after the envelope's; its own "position" is not the event's.
        const string Json = """{"type":"PipelineCompleted","pipelineId":"0b5e7a52-7f57-4f4e-9a43-6d1d6d9e8b21","seq":2,"position":0,"timestamp":"2026-11-23T22:00:00+00:00","definition":"demo","tags":{},"later":{"x":1,"position":0,"deeper":[{"y":2,"position":0}]}}""";

        var spliced = Spliced(Stored("PipelineCompleted", Encoding.UTF8.GetBytes(Json), 42));

        Assert.Equal(Json.Replace("\"position\":0,\"timestamp\"", "\"position\":42,\"timestamp\"", StringComparison.Ordinal), Encoding.UTF8.GetString(spliced));
    }

    [Fact]
    public void Should_find_the_position_of_json_not_laid_out_as_the_serializer_writes_it()
    {
        const string Json = """{ "type": "PipelineCompleted", "position": 0, "pipelineId": "0b5e7a52-7f57-4f4e-9a43-6d1d6d9e8b21", "seq": 2, "timestamp": "2026-11-23T22:00:00+00:00", "definition": "demo" }""";

        var spliced = Spliced(Stored("PipelineCompleted", Encoding.UTF8.GetBytes(Json), 42));

        Assert.Equal(Json.Replace("\"position\": 0", "\"position\": 42", StringComparison.Ordinal), Encoding.UTF8.GetString(spliced));
    }

    [Fact]
    public void Should_hand_a_filled_chunk_back_with_the_first_frame_that_does_not_fit_in_it()
    {
        var frames = new ReplayFrames();
        var json = Encoding.UTF8.GetBytes($$"""{"type":"PipelineCompleted","padding":"{{new string('p', 100_000)}}","position":0}""");
        var start = json.Length - 2;

        var first = frames.Splice(json, start, start + 1, 1);
        var second = frames.Splice(json, start, start + 1, 2);
        var third = frames.Splice(json, start, start + 1, 3);

        Assert.Null(first.ReleaseBefore);
        Assert.Null(second.ReleaseBefore);
        Assert.True(MemoryMarshal.TryGetArray(first.Frame, out var firstChunk));
        Assert.Same(firstChunk.Array, third.ReleaseBefore);
        Assert.True(MemoryMarshal.TryGetArray(third.Frame, out var thirdChunk));
        Assert.NotSame(firstChunk.Array, thirdChunk.Array);
        Assert.EndsWith("\"position\":2}", Encoding.UTF8.GetString(second.Frame.Span), StringComparison.Ordinal);
    }

    private static byte[] Spliced(StoredEvent stored)
    {
        Assert.True(StoredEventJson.TryFindPosition(stored, out var start, out var end));
        return new ReplayFrames().Splice(stored.Payload.Span, start, end, stored.Position).Frame.ToArray();
    }

    private static StoredEvent Stored(string type, byte[] json, long position) => new(PipelineId, 1, position, type, json);
}
