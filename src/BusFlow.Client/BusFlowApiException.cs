using System.Net;

namespace BusFlow.Client;

/// <summary>The edge refused a request; <see cref="Code"/> is the problem's machine-readable code (docs/protocol.md).</summary>
public sealed class BusFlowApiException : Exception
{
    /// <summary>Creates the exception from a problem response or a WebSocket error frame.</summary>
    public BusFlowApiException(HttpStatusCode? status, string code, string message)
        : base(message)
    {
        Status = status;
        Code = code;
    }

    /// <summary>The HTTP status; null for a WebSocket error frame.</summary>
    public HttpStatusCode? Status { get; }

    /// <summary>The problem code, for example <c>pipeline_not_found</c> or <c>unknown_definition</c>.</summary>
    public string Code { get; }
}
