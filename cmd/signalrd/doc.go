// Command signalrd runs the self-hosted Azure SignalR Service.
//
// Configuration is merged by viper here and nowhere else: flags over SIGNALRD_* environment
// variables over the YAML config file over defaults, then converted into server.Config.
package main
