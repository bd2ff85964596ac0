/**
 * One subscriber connection per process, shared by everything that listens to a channel
 * (the workers' wake-ups, the API's taskFired feed). `listen` resolves once Redis has
 * confirmed the subscription, so a caller knows no later message can be missed.
 *
 * On a cluster the channels are sharded (SSUBSCRIBE): ioredis keeps a subscriber on each
 * master and moves the subscriptions after a failover.
 */
import { type RedisClient, isCluster } from '../redis.js';

export type MessageHandler = (message: string) => void;

export interface Channels {
  /** Calls handler for every message on any of the channels; the returned function stops it. */
  listen(channels: string[], handler: MessageHandler): Promise<() => Promise<void>>;
}

export function createChannels(subscriber: RedisClient): Channels {
  const sharded = isCluster(subscriber);
  const channels = new Map<string, { handlers: Set<MessageHandler>; subscribed: Promise<unknown> }>();
  const deliver = (channel: string, message: string) => {
    for (const handler of channels.get(channel)?.handlers ?? []) handler(message);
  };
  subscriber.on(sharded ? 'smessage' : 'message', deliver);
  const subscribe = (channel: string) => (sharded ? subscriber.ssubscribe(channel) : subscriber.subscribe(channel));
  const unsubscribe = (channel: string) => (sharded ? subscriber.sunsubscribe(channel) : subscriber.unsubscribe(channel));

  const listenOne = async (channel: string, handler: MessageHandler) => {
    let entry = channels.get(channel);
    if (!entry) {
      entry = { handlers: new Set(), subscribed: subscribe(channel) };
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
        await unsubscribe(channel).catch(() => {});
      }
    };
  };

  return {
    async listen(names, handler) {
      const settled = await Promise.allSettled(names.map((channel) => listenOne(channel, handler)));
      const stops = settled.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
      const stopAll = async () => {
        await Promise.all(stops.map((stop) => stop()));
      };
      const failed = settled.find((result) => result.status === 'rejected');
      if (failed) {
        await stopAll();
        throw failed.reason;
      }
      return stopAll;
    },
  };
}
