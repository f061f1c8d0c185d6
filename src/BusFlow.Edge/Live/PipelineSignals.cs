namespace BusFlow.Edge.Live;

/// <summary>Lets requests wait for the next event of a pipeline (long-poll, start confirmation).</summary>
internal sealed class PipelineSignals
{
    private readonly Dictionary<Guid, Waiting> _waiting = [];

    /// <summary>Registers interest now; await the returned task (with a timeout) after re-checking the store.</summary>
    public Registration Register(Guid pipelineId)
    {
        lock (_waiting)
        {
            if (!_waiting.TryGetValue(pipelineId, out var waiting))
            {
                waiting = new Waiting();
                _waiting[pipelineId] = waiting;
            }

            waiting.Count++;
            return new Registration(this, pipelineId, waiting);
        }
    }

    public void Signal(Guid pipelineId)
    {
        Waiting? waiting;
        lock (_waiting)
        {
            if (!_waiting.Remove(pipelineId, out waiting))
            {
                return;
            }
        }

        waiting.Completion.TrySetResult();
    }

    private void Release(Guid pipelineId, Waiting waiting)
    {
        lock (_waiting)
        {
            if (--waiting.Count == 0 && _waiting.TryGetValue(pipelineId, out var current) && current == waiting)
            {
                _waiting.Remove(pipelineId);
            }
        }
    }

    internal sealed class Waiting
    {
        public TaskCompletionSource Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Count { get; set; }
    }

    /// <summary>One waiter's interest; dispose when done waiting.</summary>
    internal sealed class Registration(PipelineSignals owner, Guid pipelineId, Waiting waiting) : IDisposable
    {
        private int _disposed;

        /// <summary>Completes at the pipeline's next event, or returns false after <paramref name="timeout"/>.</summary>
        public async Task<bool> WaitAsync(TimeSpan timeout, CancellationToken cancellationToken)
        {
            try
            {
                await waiting.Completion.Task.WaitAsync(timeout, cancellationToken);
                return true;
            }
            catch (TimeoutException)
            {
                return false;
            }
        }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                owner.Release(pipelineId, waiting);
            }
        }
    }
}
