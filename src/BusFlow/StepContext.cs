using System.Text.Json;
using BusFlow.Contracts;

namespace BusFlow;

/// <summary>What a step handler gets: its input, a cancellation token, and ways to report progress, stream chunks and suspend.</summary>
public sealed class StepContext
{
    private readonly Func<ReportStepProgress, Task> _report;

    internal StepContext(ExecuteStep command, JsonSerializerOptions json, Func<ReportStepProgress, Task> report, CancellationToken cancellationToken)
    {
        Command = command;
        JsonOptions = json;
        _report = report;
        CancellationToken = cancellationToken;
    }

    /// <summary>The command as the saga sent it.</summary>
    public ExecuteStep Command { get; }

    /// <summary>Signalled when the pipeline is cancelled, fails elsewhere, or this attempt times out.</summary>
    public CancellationToken CancellationToken { get; }

    public Guid PipelineId => Command.PipelineId;

    public string StepName => Command.StepName;

    public int Attempt => Command.Attempt;

    /// <summary>For map steps: the index of the item.</summary>
    public int? ItemIndex => Command.ItemIndex;

    public IReadOnlyDictionary<string, string> Tags => Command.Tags;

    /// <summary>For a step that suspended and was answered: the answer; null on the first run.</summary>
    public JsonElement? Resume => Command.Resume;

    internal JsonSerializerOptions JsonOptions { get; }

    internal List<Func<StepCommitContext, Task>> Effects { get; } = [];

    /// <summary>
    /// Enlists an effect that commits together with this attempt's outcome. With BusFlow.Store it
    /// runs in the transaction that records the outcome and the inbox mark, so a crash or a
    /// redelivery never leaves the effect applied twice or without its outcome.
    /// </summary>
    public void Enlist(Func<StepCommitContext, Task> effect) => Effects.Add(effect);

    /// <summary>The pipeline's input, deserialised; for a map item over a property of the input, without that property (the item is <see cref="GetItem{T}"/>).</summary>
    public T? GetPipelineInput<T>() => Command.PipelineInput is { } e ? e.Deserialize<T>(JsonOptions) : default;

    /// <summary>The output named <paramref name="name"/> of a step this step consumes (for a map item, not the list it maps over: that is <see cref="GetItem{T}"/>).</summary>
    public T? GetInput<T>(string name) =>
        Command.Inputs.TryGetValue(name, out var value)
            ? value.Deserialize<T>(JsonOptions)
            : throw new KeyNotFoundException(Command.ItemIndex is not null
                ? $"Map step '{StepName}' has no input named '{name}' in its items; an item is not sent the list its step maps over (read its element with GetItem), and it consumes: {string.Join(", ", Command.Inputs.Keys)}."
                : $"Step '{StepName}' has no input named '{name}'; it consumes: {string.Join(", ", Command.Inputs.Keys)}.");

    /// <summary>For map steps: the item, deserialised.</summary>
    public T? GetItem<T>() => Command.Item is { } e ? e.Deserialize<T>(JsonOptions) : default;

    /// <summary>For a resumed step: the answer, deserialised.</summary>
    public T? GetResume<T>() => Command.Resume is { } e ? e.Deserialize<T>(JsonOptions) : default;

    /// <summary>The longest progress message, in characters: each one is recorded as an event and sent to every subscriber.</summary>
    public const int MaxProgressMessageLength = 32 * 1024;

    /// <summary>
    /// Reports progress; it arrives as a <see cref="StepProgress"/> event. A message longer than
    /// <see cref="MaxProgressMessageLength"/> throws <see cref="ArgumentException"/>.
    /// </summary>
    public Task ReportProgressAsync(double? percent, string? message = null)
    {
        if (message?.Length > MaxProgressMessageLength)
        {
            throw new ArgumentException($"A progress message is at most {MaxProgressMessageLength} characters; this one has {message.Length}. Stream larger output with StreamAsync or return it as the step's result.", nameof(message));
        }

        return _report(new ReportStepProgress { PipelineId = PipelineId, ExecutionId = Command.ExecutionId, Percent = percent, Message = message });
    }

    /// <summary>Streams a chunk of output (Hatchet's <c>put_stream</c>); it arrives as a <see cref="StepProgress"/> event with <c>chunk</c>.</summary>
    public Task StreamAsync<T>(T chunk) =>
        _report(new ReportStepProgress { PipelineId = PipelineId, ExecutionId = Command.ExecutionId, Chunk = JsonSerializer.SerializeToElement(chunk, JsonOptions) });
}

/// <summary>How a step handler ended.</summary>
public abstract record StepResult
{
    /// <summary>The step succeeded with <paramref name="value"/> as its output.</summary>
    public static StepResult Success(object? value = null) => new Succeeded(value);

    /// <summary>The step failed; <paramref name="retryable"/> false skips the retry policy.</summary>
    public static StepResult Fail(string message, bool retryable = true, string kind = "step_failed") => new Failed(new StepError(kind, message), retryable);

    /// <summary>The step waits for an outside answer; it runs again with <see cref="StepContext.Resume"/> set when answered.</summary>
    public static StepResult Suspend(string? reason = null, object? request = null, TimeSpan? timeout = null) => new Suspended(reason, request, timeout);

    public sealed record Succeeded(object? Value) : StepResult;

    public sealed record Failed(StepError Error, bool Retryable) : StepResult;

    public sealed record Suspended(string? Reason, object? Request, TimeSpan? Timeout) : StepResult;
}

/// <summary>A step worker registered through BusFlow's worker API; resolved from a DI scope per attempt.</summary>
public interface IStepHandler
{
    Task<StepResult> HandleAsync(StepContext context);
}
