using System.Text.Json;
using BusFlow.Contracts;
using MassTransit;

namespace BusFlow.Internal;

/// <summary>
/// The decisions of one pipeline instance, free of MassTransit plumbing: each method applies one
/// message to the state and records the events and commands that follow in <see cref="Decision"/>.
/// </summary>
internal sealed class PipelineEngine(PipelineDefinition definition, PipelineState state, DateTimeOffset now)
{
    private static readonly JsonElement JsonNull = JsonSerializer.SerializeToElement<object?>(null);

    /// <summary>The work items this transition made or copied (compared by reference).</summary>
    private readonly HashSet<WorkItem> _owned = new(ReferenceEqualityComparer.Instance);

    public PipelineDecision Decision { get; } = new();

    private bool Finished => state.Status != PipelineStatus.Running;

    public void Start(StartPipeline message)
    {
        state.CorrelationId = message.PipelineId;
        state.Definition = definition.Name;
        state.DefinitionVersion = definition.Version;
        state.Input = message.Input;
        state.Tags = message.Tags is null ? [] : new Dictionary<string, string>(message.Tags, StringComparer.Ordinal);
        state.Tenant = state.Tags.GetValueOrDefault(PipelineTags.Tenant);
        state.ParentPipelineId = message.ParentPipelineId;
        state.ParentStepName = message.ParentStepName;
        state.Status = PipelineStatus.Running;
        state.StartedAt = now;
        state.Steps = definition.Steps.Select(s => new StepRun { Name = s.Name }).ToList();
        Emit(new PipelineStarted
        {
            Input = message.Input,
            ParentStepName = message.ParentStepName,
            DefinitionVersion = definition.Version,
        });
        Advance();
    }

    public void Succeeded(Guid executionId, JsonElement? result)
    {
        if (FindRunning(executionId) is not var (step, item))
        {
            return;
        }

        CompleteItem(step, item, result);
        Advance();
    }

    public void Faulted(Guid executionId, StepError error, bool retryable)
    {
        if (FindRunning(executionId) is not var (step, item))
        {
            return;
        }

        FailAttempt(step, item, error, retryable);
        Advance();
    }

    public void Progress(ReportStepProgress message)
    {
        if (FindRunning(message.ExecutionId) is not var (step, item))
        {
            return;
        }

        var def = definition[step.Name];
        Emit(new StepProgress
        {
            StepName = step.Name,
            StepIndex = def.Index,
            Attempt = item.Attempt,
            ItemIndex = item.Index,
            Percent = message.Percent,
            Message = message.Message,
            Chunk = message.Chunk,
        });
    }

    public void Suspended(ReportStepSuspended message)
    {
        if (FindRunning(message.ExecutionId) is not var (step, item))
        {
            return;
        }

        var def = definition[step.Name];
        item = Own(step, item);
        item.Status = WorkStatus.Suspended;
        item.SuspendId = NewId.NextGuid();
        item.ExecutionId = null;
        item.DueAt = now + (message.Timeout ?? def.SuspensionTimeout);
        Emit(new StepSuspended
        {
            StepName = step.Name,
            StepIndex = def.Index,
            Attempt = item.Attempt,
            ItemIndex = item.Index,
            SuspendId = item.SuspendId.Value,
            Reason = message.Reason,
            Request = message.Request,
            ExpiresAt = item.DueAt,
        });
        Advance();
    }

    /// <summary>Resumes the suspended item with the answer; an unknown or already-answered suspension changes nothing.</summary>
    public void Answer(Guid suspendId, JsonElement? payload)
    {
        foreach (var step in state.Steps)
        {
            foreach (var suspended in step.Items.Where(i => i.Status == WorkStatus.Suspended && i.SuspendId == suspendId))
            {
                Decision.ClosedSuspensions.Add(suspendId);
                var item = Own(step, suspended);
                item.Resume = payload;
                Dispatch(definition[step.Name], step, item, item.Attempt);
                Advance();
                return;
            }
        }
    }

    /// <summary>The clock's wake-up: due retries are dispatched, overdue attempts time out, stale suspensions expire.</summary>
    public void Wake()
    {
        foreach (var step in state.Steps.Where(s => s.Status == StepStatus.Running))
        {
            var def = definition[step.Name];
            foreach (var item in step.Items.Where(i => i.DueAt <= now).ToList())
            {
                if (step.Status != StepStatus.Running || Finished)
                {
                    break;
                }

                switch (item.Status)
                {
                    case WorkStatus.WaitingRetry:
                        // Due: back in line; DispatchReady runs it as the next attempt within the limits.
                        var waiting = Own(step, item);
                        waiting.Status = WorkStatus.Pending;
                        waiting.DueAt = null;
                        break;
                    case WorkStatus.Running:
                        StopRemote(item, "timeout");
                        FailAttempt(step, item, new StepError("timeout", $"Step '{step.Name}' did not finish within {def.Timeout}."), retryable: true);
                        break;
                    case WorkStatus.Suspended:
                        Decision.ClosedSuspensions.Add(item.SuspendId!.Value);
                        FailAttempt(step, item, new StepError("suspension_expired", $"Step '{step.Name}' waited for an answer until {item.DueAt:O}; none came."), retryable: false);
                        break;
                }
            }
        }

        Advance();
    }

    public void Cancel(string? reason)
    {
        if (Finished)
        {
            return;
        }

        StopEverything(reason ?? "cancelled");
        state.Status = PipelineStatus.Cancelled;
        state.FinishedAt = now;
        state.NextDeadline = null;
        Emit(new PipelineCancelled
        {
            DurationMs = Elapsed(state.StartedAt),
            Reason = reason,
        });
        NotifyParent();
    }

    public void ChildFinished(ChildPipelineFinished message)
    {
        var found = state.Steps
            .SelectMany(s => s.Items.Select(i => (Step: s, Item: i)))
            .FirstOrDefault(x => x.Item.Status == WorkStatus.Running && x.Item.ChildPipelineId == message.ChildPipelineId);
        if (found.Item is null)
        {
            return;
        }

        if (message.Outcome == PipelineStatus.Completed)
        {
            CompleteItem(found.Step, found.Item, JsonSerializer.SerializeToElement(message.Outputs ?? new Dictionary<string, JsonElement>()));
        }
        else
        {
            var error = message.Error ?? new StepError("child_" + message.Outcome.ToString().ToLowerInvariant(), $"Child pipeline {message.ChildPipelineId} ended {message.Outcome}.");
            FailAttempt(found.Step, found.Item, error, retryable: message.Outcome == PipelineStatus.Failed);
        }

        Advance();
    }

    private (StepRun Step, WorkItem Item)? FindRunning(Guid executionId)
    {
        if (Finished)
        {
            return null;
        }

        foreach (var step in state.Steps)
        {
            foreach (var item in step.Items)
            {
                if (item.ExecutionId == executionId && item.Status == WorkStatus.Running)
                {
                    return (step, item);
                }
            }
        }

        return null;
    }

    private void CompleteItem(StepRun step, WorkItem item, JsonElement? result)
    {
        var def = definition[step.Name];
        item = Own(step, item);
        item.Status = WorkStatus.Completed;
        item.Result = result;
        item.DueAt = null;
        item.ExecutionId = null;
        Emit(new StepCompleted
        {
            StepName = step.Name,
            StepIndex = def.Index,
            Attempt = item.Attempt,
            ItemIndex = item.Index,
            DurationMs = Elapsed(item.DispatchedAt),
            Result = result,
        });

        if (def.Kind == StepKind.Map && AllCompleted(step))
        {
            CompleteStep(step, def, JsonSerializer.SerializeToElement(step.Items.Select(i => i.Result)), emit: true);
        }
        else if (def.Kind != StepKind.Map)
        {
            CompleteStep(step, def, result, emit: false);
        }
    }

    private void CompleteStep(StepRun step, StepDefinition def, JsonElement? result, bool emit)
    {
        step.Status = StepStatus.Completed;
        step.Result = result;
        step.FinishedAt = now;
        if (emit)
        {
            // The map step as a whole: its result is the list of item results, in item order.
            Emit(new StepCompleted
            {
                StepName = step.Name,
                StepIndex = def.Index,
                Attempt = 1,
                DurationMs = Elapsed(step.StartedAt),
                Result = result,
            });
        }
    }

    private void FailAttempt(StepRun step, WorkItem item, StepError error, bool retryable)
    {
        var def = definition[step.Name];
        var willRetry = retryable && item.Attempt < def.Retry.MaxAttempts;
        DateTimeOffset? retryAt = willRetry ? now + def.Retry.DelayBefore(item.Attempt + 1) : null;
        var duration = Elapsed(item.DispatchedAt);
        item = Own(step, item);
        item.ExecutionId = null;
        item.Error = error;
        item.Status = willRetry ? WorkStatus.WaitingRetry : WorkStatus.Failed;
        item.DueAt = retryAt;
        Emit(new StepFailed
        {
            StepName = step.Name,
            StepIndex = def.Index,
            Attempt = item.Attempt,
            ItemIndex = item.Index,
            DurationMs = duration,
            Error = error,
            WillRetry = willRetry,
            RetryAt = retryAt,
        });

        if (willRetry)
        {
            return;
        }

        step.Status = StepStatus.Failed;
        step.Error = error;
        step.FinishedAt = now;
        state.FailedStep ??= step.Name;
        state.Error ??= error;

        // A map item that failed for good fails its step; the step's other items stop.
        for (var i = 0; i < step.Items.Count; i++)
        {
            if (step.Items[i] != item)
            {
                StopItem(step, step.Items[i], "step failed");
            }
        }

        if (def.OnFailure == FailurePolicy.FailPipeline)
        {
            FailPipeline(step.Name, error);
        }
    }

    /// <summary>
    /// Fails a running pipeline that no process could decide (<c>unknown_version</c>): what runs is
    /// told to stop, as in any failure, with no definition at hand; the state alone says what runs.
    /// </summary>
    public static PipelineDecision FailWithoutDefinition(PipelineState state, StepError error, DateTimeOffset now)
    {
        var engine = WithoutDefinition(state, now);
        engine.FailPipeline(null, error);
        return engine.Decision;
    }

    /// <summary>Cancels a running pipeline whose definition version this process lacks: a cancel needs only the state.</summary>
    public static PipelineDecision CancelWithoutDefinition(PipelineState state, string? reason, DateTimeOffset now)
    {
        var engine = WithoutDefinition(state, now);
        engine.Cancel(reason);
        return engine.Decision;
    }

    private static PipelineEngine WithoutDefinition(PipelineState state, DateTimeOffset now) =>
        new(new PipelineDefinition(state.Definition, [], 1) { Version = state.DefinitionVersion }, state, now);

    private void FailPipeline(string? failedStep, StepError error)
    {
        StopEverything(failedStep is null ? error.Message : $"step '{failedStep}' failed");
        state.Status = PipelineStatus.Failed;
        state.FailedStep = failedStep;
        state.Error = error;
        state.FinishedAt = now;
        state.NextDeadline = null;
        Emit(new PipelineFailed
        {
            DurationMs = Elapsed(state.StartedAt),
            FailedStep = failedStep,
            Error = error,
        });
        NotifyParent();
    }

    /// <summary>Moves the pipeline forward: starts ready steps, skips doomed ones, dispatches within limits, and ends it when nothing is left.</summary>
    private void Advance()
    {
        if (Finished)
        {
            return;
        }

        var byName = state.Steps.ToDictionary(s => s.Name, StringComparer.Ordinal);
        foreach (var def in definition.Steps)
        {
            var step = byName[def.Name];
            if (step.Status != StepStatus.Pending)
            {
                continue;
            }

            var deps = def.DependsOn.Select(d => byName[d]).ToList();
            if (deps.Any(d => d.Status is StepStatus.Failed or StepStatus.Skipped or StepStatus.Cancelled))
            {
                step.Status = StepStatus.Skipped;
                step.FinishedAt = now;
            }
            else if (deps.All(d => d.Status == StepStatus.Completed))
            {
                Open(def, step, byName);
                if (Finished)
                {
                    return;
                }
            }
        }

        DispatchReady();

        if (state.Steps.All(s => s.Status == StepStatus.Completed))
        {
            state.Status = PipelineStatus.Completed;
            state.FinishedAt = now;
            state.NextDeadline = null;
            var outputs = definition.Sinks.ToDictionary(s => s.Name, s => byName[s.Name].Result ?? JsonNull, StringComparer.Ordinal);
            Emit(new PipelineCompleted
            {
                DurationMs = Elapsed(state.StartedAt),
                Outputs = outputs,
            });
            NotifyParent(outputs);
            return;
        }

        if (state.Steps.All(s => s.Status is not (StepStatus.Pending or StepStatus.Running)))
        {
            // Only reachable when a ContinueIndependent failure let the other branches finish.
            var failed = state.Steps.First(s => s.Status == StepStatus.Failed);
            FailPipeline(failed.Name, failed.Error!);
            return;
        }

        DateTimeOffset? next = null;
        foreach (var step in state.Steps)
        {
            foreach (var item in step.Items)
            {
                if (item is { Status: WorkStatus.Running or WorkStatus.WaitingRetry or WorkStatus.Suspended, DueAt: { } due } && (next is null || due < next))
                {
                    next = due;
                }
            }
        }

        state.NextDeadline = next;
    }

    // The passes over a step's items are plain loops: a transition of a 10,000-item map looks each
    // item over a few times in memory, and with LINQ those passes were a quarter of its CPU.
    private static int CountRunning(StepRun step)
    {
        var running = 0;
        foreach (var item in step.Items)
        {
            running += item.Status == WorkStatus.Running ? 1 : 0;
        }

        return running;
    }

    private static bool AllCompleted(StepRun step)
    {
        foreach (var item in step.Items)
        {
            if (item.Status != WorkStatus.Completed)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>A step whose dependencies completed: create its work items.</summary>
    private void Open(StepDefinition def, StepRun step, Dictionary<string, StepRun> byName)
    {
        step.Status = StepStatus.Running;
        step.StartedAt = now;
        if (def.Kind != StepKind.Map)
        {
            step.Items = [Owned(new WorkItem())];
            return;
        }

        var source = ResolveMapSource(def, byName);
        if (source is not { ValueKind: JsonValueKind.Array } list)
        {
            step.Items = [Owned(new WorkItem { Attempt = 1, DispatchedAt = now })];
            FailAttempt(step, step.Items[0], new StepError("invalid_input", $"Map step '{def.Name}' maps over '{def.MapSource}', which is not a JSON array."), retryable: false);
            return;
        }

        if (list.GetArrayLength() > def.MaxItems)
        {
            step.Items = [Owned(new WorkItem { Attempt = 1, DispatchedAt = now })];
            FailAttempt(step, step.Items[0], new StepError("map_too_large", $"Map step '{def.Name}' maps over {list.GetArrayLength()} items of '{def.MapSource}'; its limit is {def.MaxItems} (MaxItems on the step)."), retryable: false);
            return;
        }

        step.Items = list.EnumerateArray().Select((e, i) => Owned(new WorkItem { Index = i, Item = e.Clone() })).ToList();
        if (step.Items.Count == 0)
        {
            CompleteStep(step, def, JsonSerializer.SerializeToElement(Array.Empty<object>()), emit: true);
        }
    }

    private JsonElement? ResolveMapSource(StepDefinition def, Dictionary<string, StepRun> byName)
    {
        var source = def.MapSource!;
        if (source.StartsWith(PipelineDefinitionValidator.InputPrefix, StringComparison.Ordinal))
        {
            var property = source[PipelineDefinitionValidator.InputPrefix.Length..];
            return state.Input is { ValueKind: JsonValueKind.Object } input && input.TryGetProperty(property, out var value) ? value : null;
        }

        var producer = definition.Steps.First(s => s.OutputName == source);
        return byName[producer.Name].Result;
    }

    /// <summary>The pipeline's input for a map item: without the property the map is over, when it maps over one.</summary>
    private JsonElement? InputWithoutMappedList(StepDefinition def)
    {
        if (state.Input is not { ValueKind: JsonValueKind.Object } input || !def.MapSource!.StartsWith(PipelineDefinitionValidator.InputPrefix, StringComparison.Ordinal))
        {
            return state.Input;
        }

        var mapped = def.MapSource[PipelineDefinitionValidator.InputPrefix.Length..];
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            // Enumerating skips over each value (JsonDocument knows its extent): the list is not read.
            foreach (var property in input.EnumerateObject())
            {
                if (property.Name != mapped)
                {
                    property.WriteTo(writer);
                }
            }

            writer.WriteEndObject();
        }

        return JsonSerializer.Deserialize<JsonElement>(buffer.WrittenSpan);
    }

    private void DispatchReady()
    {
        var running = 0;
        foreach (var step in state.Steps)
        {
            running += CountRunning(step);
        }

        foreach (var def in definition.Steps)
        {
            var step = state.Steps[def.Index];
            if (step.Status != StepStatus.Running)
            {
                continue;
            }

            var runningInStep = CountRunning(step);
            for (var i = 0; i < step.Items.Count; i++)
            {
                if (running >= definition.MaxParallelism || runningInStep >= def.MaxParallelism)
                {
                    break;
                }

                var item = step.Items[i];
                if (item.Status != WorkStatus.Pending)
                {
                    continue;
                }

                Dispatch(def, step, item, attempt: item.Attempt + 1);
                running++;
                runningInStep++;
            }
        }
    }

    private void Dispatch(StepDefinition def, StepRun step, WorkItem item, int attempt)
    {
        item = Own(step, item);
        item.Status = WorkStatus.Running;
        item.Attempt = attempt;
        item.ExecutionId = NewId.NextGuid();
        item.DispatchedAt = now;
        item.DueAt = def.Timeout is { } timeout ? now + timeout : null;
        item.SuspendId = item.Resume is null ? null : item.SuspendId;
        // A map item gets its element as its item, not the whole list again with every item (which
        // made a map's messages grow with the square of its items).
        var inputs = def.Consumes.Where(name => def.Kind != StepKind.Map || name != def.MapSource).ToDictionary(
            name => name,
            name => state.Steps[definition.Steps.First(s => s.OutputName == name).Index].Result ?? JsonNull,
            StringComparer.Ordinal);

        if (def.Kind == StepKind.Child)
        {
            item.ChildPipelineId = item.ExecutionId;
            Decision.ChildStarts.Add(new StartPipeline
            {
                PipelineId = item.ChildPipelineId.Value,
                Definition = def.ChildDefinition!,
                Input = def.ChildInputFrom is { } from ? inputs[from] : state.Input,
                Tags = state.Tags,
                ParentPipelineId = state.CorrelationId,
                ParentStepName = step.Name,
            });
        }
        else
        {
            Decision.StepCommands.Add(new ExecuteStep
            {
                PipelineId = state.CorrelationId,
                ExecutionId = item.ExecutionId.Value,
                Definition = definition.Name,
                StepName = step.Name,
                Worker = def.Worker!,
                Attempt = attempt,
                ItemIndex = item.Index,
                Item = item.Item,
                PipelineInput = def.Kind == StepKind.Map ? InputWithoutMappedList(def) : state.Input,
                Inputs = inputs,
                Tags = state.Tags,
                Deadline = item.DueAt,
                Resume = item.Resume,
            });
        }

        Emit(new StepStarted
        {
            StepName = step.Name,
            StepIndex = def.Index,
            Attempt = attempt,
            ItemIndex = item.Index,
            ChildPipelineId = item.ChildPipelineId,
        });
    }

    private void StopEverything(string reason)
    {
        foreach (var step in state.Steps)
        {
            for (var i = 0; i < step.Items.Count; i++)
            {
                StopItem(step, step.Items[i], reason);
            }

            if (step.Status is StepStatus.Pending or StepStatus.Running)
            {
                step.Status = StepStatus.Cancelled;
                step.FinishedAt = now;
            }
        }
    }

    private void StopItem(StepRun step, WorkItem item, string reason)
    {
        if (item.Status is WorkStatus.Completed or WorkStatus.Failed or WorkStatus.Cancelled)
        {
            return;
        }

        item = Own(step, item);
        if (item.Status == WorkStatus.Running)
        {
            StopRemote(item, reason);
        }

        if (item.Status == WorkStatus.Suspended)
        {
            Decision.ClosedSuspensions.Add(item.SuspendId!.Value);
        }

        item.Status = WorkStatus.Cancelled;
        item.ExecutionId = null;
        item.DueAt = null;
    }

    /// <summary>Tells the worker (or child pipeline) running the item's attempt to stop.</summary>
    private void StopRemote(WorkItem item, string reason)
    {
        if (item.ChildPipelineId is { } child && item.ChildPipelineId == item.ExecutionId)
        {
            Decision.ChildCancels.Add(new CancelPipeline { PipelineId = child, Reason = reason });
            return;
        }

        var cancel = Decision.StepCancels.FirstOrDefault();
        if (cancel is null)
        {
            Decision.StepCancels.Add(new CancelStepExecutions { PipelineId = state.CorrelationId, ExecutionIds = [item.ExecutionId!.Value], Reason = reason });
        }
        else
        {
            Decision.StepCancels[0] = cancel with { ExecutionIds = [.. cancel.ExecutionIds, item.ExecutionId!.Value] };
        }
    }

    private void NotifyParent(IReadOnlyDictionary<string, JsonElement>? outputs = null)
    {
        if (state.ParentPipelineId is { } parent)
        {
            Decision.ParentNotice = new ChildPipelineFinished
            {
                PipelineId = parent,
                ChildPipelineId = state.CorrelationId,
                Outcome = state.Status,
                Outputs = outputs,
                Error = state.Error,
            };
        }
    }

    /// <summary>
    /// The item to change in place: the one this transition made or copied already, else a copy put
    /// in its place in the step's list. The items a transition starts with may be shared with the
    /// state a store remembers (a map's items are not copied whole for every transition), so they
    /// are never changed themselves; and a store can tell the items a transition changed by reference.
    /// </summary>
    private WorkItem Own(StepRun step, WorkItem item)
    {
        if (_owned.Contains(item))
        {
            return item;
        }

        var copy = Owned(item.Copy());
        var at = item.Index is { } index && index < step.Items.Count && step.Items[index] == item ? index : step.Items.IndexOf(item);
        step.Items[at] = copy;
        return copy;
    }

    private WorkItem Owned(WorkItem item)
    {
        _owned.Add(item);
        return item;
    }

    /// <summary>
    /// Records an event of this transition: the one place its envelope is set (the pipeline, the
    /// next seq, the transition's time, the definition, the tags and the parent); the caller gives
    /// only what the event itself says.
    /// </summary>
    private void Emit(PipelineEvent e) =>
        Decision.Events.Add(e with
        {
            PipelineId = state.CorrelationId,
            Seq = ++state.LastSeq,
            Timestamp = now,
            Definition = definition.Name,
            Tags = state.Tags,
            ParentPipelineId = state.ParentPipelineId,
        });

    private double Elapsed(DateTimeOffset? since) => since is { } s ? Math.Round((now - s).TotalMilliseconds, 3) : 0;
}
