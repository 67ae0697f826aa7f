package appserver_test

import (
	"context"
	"log"
	"net/http"
	"os"
	"os/signal"

	"github.com/signalrd/signalrd/sdk/appserver"
)

// The Go app-server quickstart of docs/quickstart.md: a chat hub whose clients negotiate at
// /chat/negotiate on :5000 and are redirected to the signalrd started by `make run`.
func ExampleServer_quickstart() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	connStr := os.Getenv("SIGNALRD_CONNECTION_STRING") // `signalrd connstr` prints it
	if connStr == "" {
		connStr = "Endpoint=http://localhost;Port=8888;AccessKey=ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH;Version=1.0;"
	}
	srv, err := appserver.New(appserver.Options{ConnectionString: connStr})
	if err != nil {
		log.Fatal(err)
	}
	chat := &appserver.Hub{}
	chat.On("SendMessage", func(c *appserver.Context, user, text string) error {
		return c.Clients.All().Send(c, "ReceiveMessage", user, text)
	})
	srv.MapHub("chat", chat)

	mux := http.NewServeMux()
	mux.Handle("/chat/negotiate", srv.NegotiateHandler("chat", appserver.NegotiateOptions{
		UserID: func(r *http.Request) string { return r.URL.Query().Get("user") },
	}))
	mux.Handle("/", http.FileServer(http.Dir("wwwroot"))) // index.html: the browser quickstart

	if err := srv.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Ready(ctx); err != nil { // the hub's sockets are connected
		log.Fatal(err)
	}
	hs := &http.Server{Addr: "localhost:5000", Handler: mux}
	go func() { <-ctx.Done(); _ = hs.Shutdown(context.Background()) }()
	if err := hs.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
