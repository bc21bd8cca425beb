// The same small session app on Express 4, Express 5 and Fastify with
// @fastify/session, listening on a loopback port, for tests that send real
// parallel requests with one cookie.
import { randomUUID } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import express from 'express'
import session from 'express-session'
import Fastify from 'fastify'
import type { PostgresSessionStore } from '../../lib/session-store'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const express4: typeof express = require('express4')

export type Framework = 'Express 4' | 'Express 5' | 'Fastify'
export const frameworks: Framework[] = ['Express 4', 'Express 5', 'Fastify']

const SECRET = 'a test secret that is at least 32 characters long'
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A route handler: it changes the session it is given and answers with JSON. */
type Change = (session: Record<string, any>, params: Record<string, string>) => unknown | Promise<unknown>

/**
 * What every app serves. Each route waits its `delay` query parameter (ms)
 * after the session was read, then changes it, as a slow request does.
 */
const routes: Record<string, Change> = {
  '/start': (s) => void (s.started = true),
  '/key/:i': (s, { i }) => void (s[`k${i}`] = Number(i)),
  '/file/:i': (s, { i }) => {
    s.files ??= {}
    s.files[randomUUID()] = { name: `file ${i}`, size: Number(i) }
  },
  '/set/:key/:value': (s, { key, value }) => void (s[key] = value),
  '/delete/:key': (s, { key }) => void delete s[key],
  '/count': (s) => void (s.count = (s.count ?? 0) + 1),
  '/peek': () => undefined,
}

export interface RunningApp {
  url: string
  close(): Promise<void>
}

const delayOf = (query: unknown) => Number((query as { delay?: string }).delay ?? 0)

/** Starts the app on framework with store, on a free loopback port. */
export async function startApp(framework: Framework, store: PostgresSessionStore): Promise<RunningApp> {
  return framework === 'Fastify' ? startFastify(store) : startExpress(framework === 'Express 4' ? express4 : express, store)
}

async function startExpress(createApp: typeof express, store: PostgresSessionStore): Promise<RunningApp> {
  const app = createApp()
  app.use(session({ store, secret: SECRET, resave: false, saveUninitialized: false }))
  for (const [path, change] of Object.entries(routes)) {
    app.get(path, async (req, res, next) => {
      try {
        await sleep(delayOf(req.query))
        await change(req.session as unknown as Record<string, any>, req.params as Record<string, string>)
        res.json({ ...req.session })
      } catch (error) {
        next(error)
      }
    })
  }
  app.get('/logout', (req, res, next) => req.session.destroy((error) => (error ? next(error) : res.json({}))))
  const server = app.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

async function startFastify(store: PostgresSessionStore): Promise<RunningApp> {
  const app = Fastify()
  await app.register(fastifyCookie)
  // saveUninitialized: false, as in the Express apps: a request without a cookie that changes nothing stores nothing.
  await app.register(fastifySession, { store: store as any, secret: SECRET, cookie: { secure: false }, saveUninitialized: false })
  for (const [path, change] of Object.entries(routes)) {
    app.get(path, async (req) => {
      await sleep(delayOf(req.query))
      await change(req.session as unknown as Record<string, any>, req.params as Record<string, string>)
      return { ...req.session }
    })
  }
  app.get('/logout', async (req) => {
    await req.session.destroy()
    return {}
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, close: () => app.close() }
}

/** A client holding one session cookie. */
export class Client {
  cookie = ''

  constructor(private readonly app: RunningApp) {}

  async get(path: string, delay = 0): Promise<Record<string, any>> {
    const response = await fetch(`${this.app.url}${path}?delay=${delay}`, { headers: { cookie: this.cookie } })
    const setCookie = response.headers.get('set-cookie')
    if (setCookie && !this.cookie) this.cookie = setCookie.split(';')[0]
    if (!response.ok) throw new Error(`GET ${path} answered ${response.status}: ${await response.text()}`)
    return (await response.json()) as Record<string, any>
  }
}

/** Random whole milliseconds from 0 to max. */
export const jitter = (max: number) => Math.floor(Math.random() * (max + 1))
