// A Fastify 5 app with @fastify/session 11 over one store, configured as the
// plugin's defaults have it (rolling: true, saveUninitialized: true): the
// session is saved at the end of every request, changed or not, so whether
// an unchanged session costs a write is up to the store.
import fastifyCookie from '@fastify/cookie'
import fastifySession, { type SessionStore } from '@fastify/session'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Store } from 'express-session'
import { HTTP_SECRET } from './http-sessions.js'
import { SESSION_MAX_AGE_MS } from './sessions.js'

declare module 'fastify' {
  interface Session {
    userId?: number
  }
}

export async function fastifySessionApp(store: Store): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(fastifyCookie)
  // @fastify/session's store interface (get, set, destroy with callbacks) is express-session's.
  await app.register(fastifySession, {
    store: store as unknown as SessionStore,
    secret: HTTP_SECRET,
    cookie: { secure: false, maxAge: SESSION_MAX_AGE_MS },
  })
  // Logs in: changes the session, which is then saved.
  app.post<{ Params: { user: string } }>('/login/:user', async (request) => {
    request.session.userId = Number(request.params.user)
    return 'ok'
  })
  // Reads the session only.
  app.get('/read', async (request) => String(request.session.userId ?? 'no session'))
  await app.ready()
  return app
}
