/**
 * One subscriber connection per process, shared by everything that listens to a channel
 * (the workers' wake-ups, the API's taskFired feed). `listen` resolves once Redis has
 * confirmed the subscription, so a caller knows no later message can be missed.
 */
import type { Redis } from 'ioredis';

export type MessageHandler = (message: string) => void;

export interface Channels {
  /** Calls handler for every message on channel; the returned function stops it. */
  listen(channel: string, handler: MessageHandler): Promise<() => Promise<void>>;
}

export function createChannels(subscriber: Redis): Channels {
  const channels = new Map<string, { handlers: Set<MessageHandler>; subscribed: Promise<unknown> }>();
  subscriber.on('message', (channel: string, message: string) => {
    for (const handler of channels.get(channel)?.handlers ?? []) handler(message);
  });
  return {
    async listen(channel, handler) {
      let entry = channels.get(channel);
      if (!entry) {
        entry = { handlers: new Set(), subscribed: subscriber.subscribe(channel) };
        channels.set(channel, entry);
      }
      const current = entry;
      current.handlers.add(handler);
      try {
        await current.subscribed;
      } catch (error) {
        current.handlers.delete(handler);
        if (channels.get(channel) === current) channels.delete(channel);
        throw error;
      }
      return async () => {
        current.handlers.delete(handler);
        if (current.handlers.size === 0 && channels.get(channel) === current) {
          channels.delete(channel);
          await subscriber.unsubscribe(channel).catch(() => {});
        }
      };
    },
  };
}
