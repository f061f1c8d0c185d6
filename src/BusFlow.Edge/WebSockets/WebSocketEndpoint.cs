using BusFlow.Edge.Auth;
using BusFlow.Edge.Http;
using BusFlow.Edge.Live;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace BusFlow.Edge.WebSockets;

/// <summary><c>GET /ws</c>: checks node capacity (the principal filter checked the origin), accepts the socket and runs the connection.</summary>
internal static class WebSocketEndpoint
{
    public static async Task HandleAsync(
        HttpContext http,
        SubscriptionHub hub,
        LiveFeed feed,
        IPipelineQueries pipelines,
        IPipelineEventLog reader,
        EdgeMetrics metrics,
        ILoggerFactory loggers)
    {
        if (!http.WebSockets.IsWebSocketRequest)
        {
            await Problems.Invalid("websocket_required", "GET /ws is a WebSocket endpoint; open it with a WebSocket client.").ExecuteAsync(http);
            return;
        }

        if (!hub.Accepting)
        {
            await Problems.Of(StatusCodes.Status503ServiceUnavailable, "shutting_down", "Shutting down", "This edge node is shutting down; connect to another.").ExecuteAsync(http);
            return;
        }

        await feed.Ready.WaitAsync(http.RequestAborted);
        using var socket = await http.WebSockets.AcceptWebSocketAsync();
        var connection = new WebSocketConnection(socket, http.Principal(), hub, pipelines, reader, metrics, loggers.CreateLogger<WebSocketConnection>())
        {
            Corked = CorkedStream.Of(http),
        };
        if (hub.TryOpen(connection) is { } refused)
        {
            await socket.CloseOutputAsync((System.Net.WebSockets.WebSocketCloseStatus)CloseCodes.TryAgainLater, refused.CloseReason, http.RequestAborted);
            return;
        }

        try
        {
            await connection.RunAsync();
        }
        finally
        {
            hub.Closed(connection);
        }
    }
}
