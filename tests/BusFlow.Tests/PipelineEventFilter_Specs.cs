using BusFlow.Contracts;

namespace BusFlow.Tests;

public sealed class When_events_are_filtered
{
    private static readonly Guid Pipeline = Guid.NewGuid();

    private static StepCompleted Completed(Guid pipelineId, IReadOnlyDictionary<string, string> tags) => new()
    {
        PipelineId = pipelineId,
        Seq = 3,
        Timestamp = DateTimeOffset.UtcNow,
        Definition = "demo",
        Tags = tags,
        StepName = "merge",
        StepIndex = 3,
        Attempt = 1,
    };

    [Fact]
    public void Should_pass_everything_when_empty()
    {
        Assert.True(new PipelineEventFilter().Matches(Completed(Pipeline, PipelineEvent.EmptyTags)));
    }

    [Fact]
    public void Should_match_by_pipeline_and_event_type()
    {
        var filter = new PipelineEventFilter { PipelineId = Pipeline, EventTypes = new HashSet<string> { "StepCompleted" } };

        Assert.True(filter.Matches(Completed(Pipeline, PipelineEvent.EmptyTags)));
        Assert.False(filter.Matches(Completed(Guid.NewGuid(), PipelineEvent.EmptyTags)));
        Assert.False((filter with { EventTypes = new HashSet<string> { "StepFailed" } }).Matches(Completed(Pipeline, PipelineEvent.EmptyTags)));
    }

    [Fact]
    public void Should_require_every_given_tag_with_its_exact_value()
    {
        var filter = new PipelineEventFilter { Tags = new Dictionary<string, string> { ["tenant"] = "t1", ["run"] = "a" } };

        Assert.True(filter.Matches(Completed(Pipeline, new Dictionary<string, string> { ["tenant"] = "t1", ["run"] = "a", ["extra"] = "x" })));
        Assert.False(filter.Matches(Completed(Pipeline, new Dictionary<string, string> { ["tenant"] = "t1" })));
        Assert.False(filter.Matches(Completed(Pipeline, new Dictionary<string, string> { ["tenant"] = "T1", ["run"] = "a" })));
    }
}
