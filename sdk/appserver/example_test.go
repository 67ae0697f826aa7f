package appserver_test

import (
	"context"
	"log"
	"net/http"
	"time"

	"github.com/signalrd/signalrd/auth"
	"github.com/signalrd/signalrd/sdk/appserver"
)

// A chat hub behind signalrd: clients negotiate at /chat/negotiate and are redirected to the
// service, which forwards their messages to the hub over the server connections.
func Example() {
	srv, err := appserver.New(appserver.Options{
		ConnectionString: "Endpoint=http://localhost:8080;AccessKey=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH;Version=1.0;",
	})
	if err != nil {
		log.Fatal(err)
	}
	chat := &appserver.Hub{
		OnConnected: func(c *appserver.Context) error {
			return c.Clients.Others().Send(c, "joined", c.UserID)
		},
		OnDisconnected: func(c *appserver.Context, err error) {
			_ = c.Clients.All().Send(c, "left", c.UserID)
		},
	}
	chat.On("SendMessage", func(c *appserver.Context, user, text string) error {
		return c.Clients.All().Send(c, "ReceiveMessage", user, text)
	})
	chat.On("JoinRoom", func(c *appserver.Context, room string) error {
		if err := c.Groups.Add(c, c.ConnectionID, room); err != nil {
			return err
		}
		return c.Clients.Group(room).Send(c, "ReceiveMessage", "system", c.UserID+" joined "+room)
	})
	chat.On("Add", func(c *appserver.Context, a, b int) (int, error) { return a + b, nil })
	srv.MapHub("chat", chat)

	mux := http.NewServeMux()
	mux.Handle("/chat/negotiate", srv.NegotiateHandler("chat", appserver.NegotiateOptions{
		UserID: func(r *http.Request) string { return r.URL.Query().Get("user") },
		Claims: func(r *http.Request) []auth.Claim { return []auth.Claim{{Type: "role", Value: "member"}} },
	}))

	if err := srv.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Ready(ctx); err != nil {
		log.Fatal(err)
	}
	// Outside hub calls, use the hub context.
	_ = srv.Hub("chat").Clients.All().Send(ctx, "ReceiveMessage", "system", "server started")
	log.Fatal(http.ListenAndServe(":5000", mux))
}
